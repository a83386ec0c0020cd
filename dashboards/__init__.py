"""Grafana dashboards as code (grafanalib). Built in issue 7; nothing here yet."""
