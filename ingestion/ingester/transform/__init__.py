"""Pure functions that turn source payloads into rows: no I/O, testable with plain data."""
