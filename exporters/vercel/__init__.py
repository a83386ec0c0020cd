"""Vercel exporter: deployments from the REST API, requests, traces and Web Vitals from drains."""
