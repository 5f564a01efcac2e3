"""Benchmarks of the exporter against fast loopback targets (``python3 -m bench``), writing BENCHMARKS.md.

Nothing here leaves 127.0.0.1, every loop is bounded in count and time, and every process a
benchmark starts is stopped (its whole process group) when the benchmark ends, failed or not.
"""
