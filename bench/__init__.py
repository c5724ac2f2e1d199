"""Benchmarks of dbhealth side by side with postgres_exporter and mysqld_exporter.

Run with `python -m bench.compare` from the repository root; figures land in bench/results/.
"""
