"""Panel and dashboard builders (see dashboards/lib/__init__.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import grafanalib.core as g
from grafanalib._gen import DashboardEncoder

from dashboards.rules import rules

SCHEMA_VERSION = 39  # Grafana 10.4 / 11.x
# Datasources are variables: a dashboard works in any Grafana whatever its datasources are named.
PROM = {"type": "prometheus", "uid": "${datasource}"}
PG = {"type": "grafana-postgresql-datasource", "uid": "${recorder_db}"}
WIDTH = 24


@dataclass(frozen=True)
class Prom:
    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False  # one row per series (format "table")


@dataclass(frozen=True)
class Sql:
    sql: str
    time_series: bool = False


Query = Prom | Sql


@dataclass
class Panel:
    """A built panel before layout: its JSON, and its size on the 24-column grid."""

    json: dict[str, Any]
    w: int
    h: int
    queries: list[Query]
    new_row: str | None = None  # start a new row with this title before the panel


def runbook(alert: str) -> dict[str, Any]:
    """A panel link to the alert's runbook: the same URL as the alert's runbook_url annotation."""
    return {"title": f"Runbook: {alert}", "url": rules().runbook_url(alert)}


def _steps(thresholds: list[tuple[float | None, str]] | None) -> dict[str, Any]:
    steps = thresholds or [(None, "green")]
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


def _targets(queries: list[Query]) -> list[Any]:
    out: list[Any] = []
    for i, q in enumerate(queries):
        ref = chr(ord("A") + i)
        if isinstance(q, Prom):
            out.append(
                g.Target(
                    expr=q.expr,
                    legendFormat=q.legend,
                    refId=ref,
                    instant=q.instant,
                    format="table" if q.table else "time_series",
                    datasource=PROM,
                )
            )
        else:
            out.append(
                g.SqlTarget(
                    rawSql=q.sql,
                    rawQuery=True,
                    refId=ref,
                    format="time_series" if q.time_series else "table",
                    datasource=PG,
                )
            )
    return out


def _finish(
    panel: Any,
    queries: list[Query],
    *,
    description: str,
    unit: str,
    thresholds: list[tuple[float | None, str]] | None,
    links: list[dict[str, Any]] | None,
    minimum: float | None = None,
    maximum: float | None = None,
) -> dict[str, Any]:
    if not description.strip():
        raise ValueError(f"panel {panel.title!r}: a description is required")
    if not unit:
        raise ValueError(f"panel {panel.title!r}: a unit is required")
    doc: dict[str, Any] = json.loads(json.dumps(panel.to_json_data(), cls=DashboardEncoder))
    sql = all(isinstance(q, Sql) for q in queries)
    doc["datasource"] = (
        PG
        if sql
        else PROM
        if all(isinstance(q, Prom) for q in queries)
        else {
            "type": "datasource",
            "uid": "-- Mixed --",
        }
    )
    doc["description"] = description
    # grafanalib's 100 points would make a 30-day panel's $__rate_interval 7 hours; without
    # it Grafana uses the panel's width in pixels, as for a panel made in the UI.
    doc.pop("maxDataPoints", None)
    defaults = doc.setdefault("fieldConfig", {}).setdefault("defaults", {})
    defaults["unit"] = unit
    defaults["thresholds"] = _steps(thresholds)
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    doc["links"] = [{"targetBlank": True, **link} for link in links or []]
    for t in doc.get("targets", []):
        t.pop("step", None)
        t.pop("intervalFactor", None)
        t.pop("target", None)
        t.pop("metric", None)
        if "rawSql" in t:
            for key in ("expr", "query", "legendFormat", "instant", "interval"):
                t.pop(key, None)
            t["editorMode"] = "code"
    return {k: v for k, v in doc.items() if v is not None}


def timeseries(
    title: str,
    description: str,
    unit: str,
    queries: list[Query],
    *,
    w: int = 12,
    h: int = 8,
    thresholds: list[tuple[float | None, str]] | None = None,
    links: list[dict[str, Any]] | None = None,
    stack: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    new_row: str | None = None,
) -> Panel:
    p = g.TimeSeries(
        title=title,
        targets=_targets(queries),
        unit=unit,
        stacking={"mode": "normal", "group": "A"} if stack else {},
        fillOpacity=30 if stack else 0,
        legendDisplayMode="table",
        legendCalcs=["lastNotNull", "max"],
        tooltipMode="multi",
        thresholdsStyleMode="dashed" if thresholds else "off",
    )
    doc = _finish(
        p,
        queries,
        description=description,
        unit=unit,
        thresholds=thresholds,
        links=links,
        minimum=minimum,
        maximum=maximum,
    )
    return Panel(doc, w, h, queries, new_row)


def stat(
    title: str,
    description: str,
    unit: str,
    queries: list[Query],
    *,
    w: int = 6,
    h: int = 4,
    thresholds: list[tuple[float | None, str]] | None = None,
    links: list[dict[str, Any]] | None = None,
    decimals: int | None = None,
    new_row: str | None = None,
    mappings: list[dict[str, Any]] | None = None,
) -> Panel:
    p = g.Stat(
        title=title,
        targets=_targets(queries),
        format=unit,
        reduceCalc="lastNotNull",
        graphMode="area",
        colorMode="background" if thresholds else "value",
        decimals=decimals,
    )
    doc = _finish(
        p, queries, description=description, unit=unit, thresholds=thresholds, links=links
    )
    doc["fieldConfig"]["defaults"]["noValue"] = "no data"
    if mappings:
        doc["fieldConfig"]["defaults"]["mappings"] = mappings
    if decimals is not None:
        doc["fieldConfig"]["defaults"]["decimals"] = decimals
    return Panel(doc, w, h, queries, new_row)


def table(
    title: str,
    description: str,
    unit: str,
    queries: list[Query],
    *,
    w: int = 24,
    h: int = 8,
    thresholds: list[tuple[float | None, str]] | None = None,
    links: list[dict[str, Any]] | None = None,
    hide: list[str] | None = None,
    rename: dict[str, str] | None = None,
    new_row: str | None = None,
    mappings: list[dict[str, Any]] | None = None,
) -> Panel:
    p = g.Table(title=title, targets=_targets(queries), unit=unit)
    doc = _finish(
        p, queries, description=description, unit=unit, thresholds=thresholds, links=links
    )
    transforms: list[dict[str, Any]] = []
    if any(isinstance(q, Prom) for q in queries) and len(queries) > 1:
        transforms.append({"id": "merge", "options": {}})
    if hide or rename:
        transforms.append(
            {
                "id": "organize",
                "options": {
                    "excludeByName": dict.fromkeys(hide or [], True),
                    "renameByName": rename or {},
                },
            }
        )
    doc["transformations"] = transforms
    doc["fieldConfig"]["defaults"]["custom"] = {
        "cellOptions": {"type": "color-text"} if thresholds else {"type": "auto"}
    }
    if mappings:
        doc["fieldConfig"]["defaults"]["mappings"] = mappings
    return Panel(doc, w, h, queries, new_row)


@dataclass(frozen=True)
class Var:
    """A template variable: a datasource picker, a label_values query, or a custom list."""

    name: str
    label: str
    query: str
    kind: str = "query"  # query | datasource | custom
    include_all: bool = True
    multi: bool = True
    default: str | None = None

    def json(self) -> dict[str, Any]:
        if self.kind == "datasource":
            return {
                "name": self.name,
                "label": self.label,
                "type": "datasource",
                "query": self.query,
                "current": {},
                "hide": 0,
                "refresh": 1,
                "options": [],
            }
        doc: dict[str, Any] = {
            "name": self.name,
            "label": self.label,
            "type": self.kind,
            "query": self.query
            if self.kind == "custom"
            else {"query": self.query, "refId": "vars"},
            "includeAll": self.include_all,
            "multi": self.multi,
            "allValue": ".*" if self.include_all else None,
            "current": {"text": self.default, "value": self.default} if self.default else {},
            "hide": 0,
            "options": [],
            "sort": 1,
        }
        if self.kind == "query":
            doc["datasource"] = PROM
            doc["refresh"] = 2  # on time range change: new targets appear
            doc["definition"] = self.query
        return {k: v for k, v in doc.items() if v is not None}


DATASOURCE = Var("datasource", "Prometheus", "prometheus", kind="datasource")
RECORDER_DB = Var(
    "recorder_db", "Recorder database", "grafana-postgresql-datasource", kind="datasource"
)


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    tags: list[str]
    panels: list[Panel]
    variables: list[Var] = field(default_factory=list)
    time_from: str = "now-6h"
    deployments: bool = True  # deployment annotations from the recorder's table

    def json(self) -> dict[str, Any]:
        variables = [DATASOURCE, RECORDER_DB, *self.variables]
        annotations: list[dict[str, Any]] = [
            {
                "builtIn": 1,
                "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                "enable": True,
                "hide": True,
                "iconColor": "rgba(0, 211, 255, 1)",
                "name": "Annotations & Alerts",
                "type": "dashboard",
            },
            {
                "datasource": PROM,
                "enable": True,
                "expr": 'ALERTS{alertstate="firing", severity=~"critical|error"}',
                "iconColor": "red",
                "name": "Alerts (critical, error)",
                "step": "60s",
                "tagKeys": "severity,service",
                "textFormat": "{{severity}} {{service}} {{region}} {{target}}",
                "titleFormat": "{{alertname}}",
                "useValueForTime": False,
            },
        ]
        if self.deployments:
            annotations.append(
                {
                    "datasource": PG,
                    "enable": True,
                    "iconColor": "blue",
                    "name": "Deployments (recorder)",
                    "rawQuery": DEPLOY_ANNOTATION_SQL,
                    "rawSql": DEPLOY_ANNOTATION_SQL,
                    "format": "table",
                }
            )
        panels = layout(self.panels)
        g_dash = g.Dashboard(title=self.title, uid=self.uid, tags=self.tags, timezone="browser")
        doc: dict[str, Any] = json.loads(json.dumps(g_dash.to_json_data(), cls=DashboardEncoder))
        doc.update(
            {
                "uid": self.uid,
                "title": self.title,
                "description": self.description,
                "tags": sorted(self.tags),
                "schemaVersion": SCHEMA_VERSION,
                "version": 1,
                "editable": True,
                "graphTooltip": 1,  # shared crosshair: line up a spike across panels
                "refresh": "30s",
                "time": {"from": self.time_from, "to": "now"},
                "timepicker": {},
                "panels": panels,
                "templating": {"list": [v.json() for v in variables]},
                "annotations": {"list": annotations},
                "links": [
                    {
                        "title": "wsinfra dashboards",
                        "type": "dashboards",
                        "tags": ["wsinfra"],
                        "asDropdown": True,
                        "includeVars": True,
                        "keepTime": True,
                        "icon": "external link",
                        "targetBlank": False,
                        "tooltip": "",
                        "url": "",
                    },
                    {
                        "title": "Runbooks",
                        "type": "link",
                        "url": rules().runbook_base_url,
                        "icon": "doc",
                        "targetBlank": True,
                        "asDropdown": False,
                        "includeVars": False,
                        "keepTime": False,
                        "tags": [],
                        "tooltip": "What each alert means and what to do",
                    },
                ],
            }
        )
        for key in ("rows", "id", "style", "hideControls", "sharedCrosshair", "gnetId", "inputs"):
            doc.pop(key, None)
        return doc


DEPLOY_ANNOTATION_SQL = (
    "SELECT deployed_at AS time, completed_at AS timeend,\n"
    "  environment || ' ' || deployment_status || ': ' || git_branch || ' @ ' || left(git_commit_hash, 12) AS text,\n"
    "  environment AS tags\n"
    "FROM deployment_history\n"
    "WHERE $__timeFilter(deployed_at) AND environment = 'production'\n"
    "ORDER BY deployed_at"
)


def layout(panels: list[Panel]) -> list[dict[str, Any]]:
    """Left to right, wrapping at 24 columns; a panel with `new_row` starts a titled row."""
    out: list[dict[str, Any]] = []
    x = y = row_h = 0
    pid = 1
    for p in panels:
        if p.new_row is not None:
            if x:
                y += row_h
                x = row_h = 0
            out.append(
                {
                    "collapsed": False,
                    "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": y},
                    "id": pid,
                    "panels": [],
                    "title": p.new_row,
                    "type": "row",
                }
            )
            pid += 1
            y += 1
        if x + p.w > WIDTH:
            y += row_h
            x = row_h = 0
        doc = dict(p.json)
        doc["id"] = pid
        doc["gridPos"] = {"h": p.h, "w": p.w, "x": x, "y": y}
        out.append(doc)
        pid += 1
        x += p.w
        row_h = max(row_h, p.h)
    return out
