"""Grafana dashboards as code: `python -m dashboards build [--check]` writes generated/*.json."""
