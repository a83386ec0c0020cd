"""Uptime exporter: HTTP(S) and TCP probes of the platform's endpoints, served as metrics."""

NAMESPACE = "uptime"
