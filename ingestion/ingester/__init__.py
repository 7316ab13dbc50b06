"""Nightly ingestion of wearable data for a research cohort into TimescaleDB."""

# `ingest.py --version` prints it with the schema's newest migration; raise it with a change
# a user can see (a command, a setting, a migration).
__version__ = "0.23.0"
