"""Our layer over grafanalib: every panel has a unit, a description and a datasource variable;
dashboards get fixed uids, tags, a current schemaVersion, variables, links and annotations.

grafanalib 0.7 writes an old dashboard schema (schemaVersion 12, datasources as names); the
builders here use its panel and target classes and finish the JSON the way Grafana 10/11 saves
it, so a provisioned dashboard does not change when someone opens and saves it.
"""

from dashboards.lib.core import (
    PG,
    PROM,
    Dashboard,
    Panel,
    Prom,
    Query,
    Sql,
    Var,
    runbook,
    stat,
    table,
    timeseries,
)

__all__ = [
    "PG",
    "PROM",
    "Dashboard",
    "Panel",
    "Prom",
    "Query",
    "Sql",
    "Var",
    "runbook",
    "stat",
    "table",
    "timeseries",
]
