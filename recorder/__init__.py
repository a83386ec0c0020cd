"""Recorder: Alertmanager and deployment webhooks mirrored into the spec's Postgres tables."""

NAMESPACE = "recorder"
