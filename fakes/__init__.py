"""Strict local stand-ins for what we cannot reach: Slack, PagerDuty and the platform itself.

The demo stack, the end-to-end tests and the benchmarks all use these, so a fake that lets a
wrong request through would hide a bug everywhere at once: each answers bad paths, auth and
payloads with the status and error text the real service documents.
"""
