"""Benchmarks run by ``make bench`` (``python -m benchmarks``); not shipped in the wheel."""
