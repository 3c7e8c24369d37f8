"""Benchmarks: metrics, method registry, runner and leaderboards."""
