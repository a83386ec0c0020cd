"""Prometheus alerting and recording rules rendered from one config of thresholds and SLOs."""
