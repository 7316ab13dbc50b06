"""The throughput and memory benchmark: `make bench`, or `python bench/run.py --help`."""
