"""Alertmanager routing, inhibition and notification templates (static files; see runtime.py)."""
