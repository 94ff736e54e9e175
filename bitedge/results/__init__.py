"""Benchmark results: a SQLite store, exports, tables and plots."""
