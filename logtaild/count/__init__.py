"""Counting, with no I/O: parsed records (record), formats (parsers), routes (normalization and the
cap), slots (the one owner of the slot layout), aggregation, and the report window."""
