"""Throwaway real database and Prometheus servers for the test suite and benchmarks.

Every server gets a free 127.0.0.1 port and a fresh temp dir, runs as an
unprivileged system user when we are root, and is torn down at exit.
"""
