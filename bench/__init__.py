"""Benchmarks and synthetic data generators (kept out of the default test paths)."""
