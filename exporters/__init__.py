"""Prometheus exporters for the platform's vendors and probes."""
