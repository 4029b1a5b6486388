"""Operational scripts and benchmarks for Utfall (not part of the service)."""
