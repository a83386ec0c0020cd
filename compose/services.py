"""The local stack as data: one row per service, in start order.

The runner (compose/stack.py: `up`, `status`, `down`, isolated_env()), the Prometheus config
it writes and the one compose mounts (compose/build.py) all read this table. Adding a service is
one row here plus its config writer (compose/service_configs.py, or compose/fake_configs.py for a
DEMO stand-in); compose/compose.yaml gets the service by hand, and tests/unit/test_compose.py
checks it against the row.
"""

from __future__ import annotations

import os

from compose import fake_configs as fake
from compose import service_configs as config
from compose.processes import ALERTMANAGER_BINARIES
from compose.service import Binary, Port, Python, Scrape, Service, real_mode

# The uptime job is scraped often: detection time is the floor of alert latency, and the
# exporter serves cached results, so a scrape costs it little.
UPTIME_SCRAPE_INTERVAL = "5s"
UPTIME_SCRAPE_TIMEOUT = "4s"
UPTIME_SCRAPE = Scrape("uptime", interval=UPTIME_SCRAPE_INTERVAL, timeout=UPTIME_SCRAPE_TIMEOUT)
UPTIME_READY = "/-/ready"
# Real mode runs one uptime exporter, in the region named by WSINFRA_REGION.
LOCAL_REGION = os.environ.get("WSINFRA_REGION", "local")

PROMETHEUS = "prometheus"
ALERTMANAGER = "alertmanager"

SERVICES: tuple[Service, ...] = (
    # --- DEMO stand-ins (fakes/): the platform the uptime exporters probe, the sink that
    # receives Slack and PagerDuty notifications, and the vendors' APIs.
    Service(
        name="platform",
        program=Python("fakes.platform"),
        port=Port("WSINFRA_PLATFORM_PORT", 19780, container=9780),
        more_ports=(
            Port("WSINFRA_PLATFORM_CONTROL_PORT", 19781, container=9781),
            Port("WSINFRA_PLATFORM_TLS_PORT", 19782),
        ),
        config=fake.platform,
        ready="/mode",
        ready_port="PLATFORM_CONTROL",
        label="DEMO stand-in platform",
        demo_only=True,
    ),
    Service(
        name="sink",
        program=Python("fakes.sink"),
        port=Port("WSINFRA_SINK_PORT", 19790, container=9790),
        config=fake.sink,
        ready="/-/healthy",
        label="DEMO Slack/PagerDuty sink: messages show here",
        demo_only=True,
    ),
    Service(
        name="supabase-api",
        program=Python("fakes.supabase_api"),
        port=Port("WSINFRA_SUPABASE_API_PORT", 19785, container=9785),
        config=fake.supabase_api,
        ready="/-/healthy",
        label="DEMO Supabase Management API",
        demo_only=True,
    ),
    Service(
        name="vercel-api",
        program=Python("fakes.vercel"),
        port=Port("WSINFRA_VERCEL_API_PORT", 19783, container=9783),
        config=fake.vercel_api,
        ready="/-/healthy",
        label="DEMO Vercel API and drain feed",
        demo_only=True,
    ),
    Service(
        name="billing-api",
        program=Python("fakes.billing_api"),
        port=Port("WSINFRA_BILLING_VERCEL_API_PORT", 19786, container=9786),
        more_ports=(Port("WSINFRA_BILLING_OPENAI_API_PORT", 19787, container=9787),),
        config=fake.billing_api,
        ready="/-/healthy",
        label=fake.billing_api_label,
        demo_only=True,
    ),
    # --- The uptime exporters: the DEMO simulates two regions, real mode runs one.
    Service(
        name="uptime-us-east",
        program=Python("exporters.uptime"),
        port=Port("WSINFRA_UPTIME_US_EAST_PORT", 19701, container=9701),
        config=config.uptime,
        ready=UPTIME_READY,
        label="uptime exporter, region us-east",
        shown_path="/metrics",
        scrapes=(UPTIME_SCRAPE,),
        demo_only=True,
        region="us-east",
    ),
    Service(
        name="uptime-eu-west",
        program=Python("exporters.uptime"),
        # Compose runs both regions' exporters from one definition, on the same container port.
        port=Port("WSINFRA_UPTIME_EU_WEST_PORT", 19702, container=9701),
        config=config.uptime,
        ready=UPTIME_READY,
        label="uptime exporter, region eu-west",
        shown_path="/metrics",
        scrapes=(UPTIME_SCRAPE,),
        demo_only=True,
        region="eu-west",
    ),
    Service(
        name="uptime",
        program=Python("exporters.uptime"),
        port=Port("WSINFRA_UPTIME_PORT", 19701),
        config=config.uptime,
        ready=UPTIME_READY,
        label=f"uptime exporter, region {LOCAL_REGION}",
        shown_path="/metrics",
        scrapes=(UPTIME_SCRAPE,),
        enabled_when=real_mode,
        region=LOCAL_REGION,
    ),
    # --- Exporters and the recorder.
    Service(
        name="vercel",
        program=Python("exporters.vercel"),
        port=Port("WSINFRA_VERCEL_PORT", 19703, container=9703),
        config=config.vercel,
        ready="/-/ready",
        label="Vercel exporter; drains: POST /drains/logs, /drains/traces, /drains/speed-insights",
        shown_path="/metrics",
        scrapes=(Scrape("vercel"),),
        enabled_when=config.demo_or_configured("vercel.yaml"),
    ),
    Service(
        name="recorder",
        program=Python("recorder"),
        port=Port("WSINFRA_RECORDER_PORT", 19700, container=9700),
        config=config.recorder,
        ready="/-/ready",
        label=config.recorder_label,
        shown_path="/metrics",
        # Deploy-aware alerts read the recorder's deployment series: scrape it often enough
        # that a deploy is known before the alerts it may cause.
        scrapes=(Scrape("recorder", interval="15s"),),
    ),
    # The operator API (after the recorder, which migrates the database it reads).
    Service(
        name="api",
        program=Python("api"),
        port=Port("WSINFRA_API_PORT", 19706, container=9706),
        config=config.api,
        ready="/-/ready",
        label=config.api_label,
        shown_path="/api/infrastructure/openapi.json",
        scrapes=(Scrape("api"),),
        enabled_when=config.demo_or_configured("api.yaml"),
    ),
    # The backup worker (after the recorder, which migrates the record it writes).
    Service(
        name="backups",
        program=Python("backups"),
        port=Port("WSINFRA_BACKUPS_PORT", 19707, container=9707),
        config=config.backups,
        ready="/-/ready",
        label=config.backups_label,
        shown_path="/metrics",
        scrapes=(Scrape("backups", interval="15s"),),
        enabled_when=config.demo_or_configured("backups.yaml"),
    ),
    Service(
        name="supabase",
        program=Python("exporters.supabase"),
        port=Port("WSINFRA_SUPABASE_PORT", 19704, container=9704),
        config=config.supabase,
        ready="/-/ready",
        label=config.supabase_label,
        shown_path="/metrics",
        scrapes=(
            # SQL collectors run on scrape, each query under its statement timeout and the
            # whole under the exporter's budget (8 s): the timeout leaves room for it.
            Scrape("supabase", interval="15s", timeout="10s"),
            # Supabase's own per-project metrics, through the exporter (which holds the keys):
            # targets from its HTTP SD, one scrape per project. Supabase updates them each minute.
            Scrape(
                "supabase-projects",
                interval="60s",
                timeout="20s",
                metrics_path="/probe",
                sd_path="/sd",
                enabled_when=config.supabase_projects_scraped,
            ),
        ),
    ),
    Service(
        name="billing",
        program=Python("exporters.billing"),
        port=Port("WSINFRA_BILLING_PORT", 19705, container=9705),
        config=config.billing,
        ready="/-/ready",
        label=config.billing_label,
        shown_path="/metrics",
        # Costs are refreshed in the background (hourly); /metrics serves the last refresh.
        scrapes=(Scrape("billing", interval="30s"),),
        enabled_when=config.demo_or_configured("billing.yaml"),
    ),
    # --- Alerting: Alertmanager, then Prometheus (it scrapes all of the above).
    Service(
        name=ALERTMANAGER,
        program=Binary(ALERTMANAGER_BINARIES),
        port=Port("WSINFRA_ALERTMANAGER_PORT", 19093, container=9093),
        config=config.alertmanager,
        ready="/-/ready",
        label="",
        scrapes=(Scrape("alertmanager"),),
    ),
    Service(
        name=PROMETHEUS,
        program=Binary(("prometheus",)),
        port=Port("WSINFRA_PROMETHEUS_PORT", 19090, container=9090),
        config=config.prometheus,
        ready="/-/ready",
        label="alerts: /alerts",
        scrapes=(Scrape("prometheus"),),
    ),
)


def every_port() -> list[Port]:
    return [p for s in SERVICES for p in s.ports]


def by_name(name: str) -> Service:
    return next(s for s in SERVICES if s.name == name)
