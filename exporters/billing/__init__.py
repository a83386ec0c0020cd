"""Billing exporter: FOCUS cost data from Vercel, OpenAI and files as billing_* metrics."""
