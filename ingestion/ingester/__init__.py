"""Nightly ingestion of wearable data for a research cohort into TimescaleDB."""
