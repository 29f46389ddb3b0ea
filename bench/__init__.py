"""Benchmarks: scripts that print throughput and latency, never assert them (see bench/README.md)."""
