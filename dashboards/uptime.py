"""Uptime: per target and probe region, success, latency phases, TLS expiry, security headers."""

from __future__ import annotations

from dashboards.common import PROBE_REGION, PROBE_TIME_STEPS, TAGS, TARGET, U
from dashboards.lib import Dashboard, Prom, runbook, table, timeseries

SEL = 'target=~"$target", region=~"$region"'
DAY = 86400

DASHBOARD = Dashboard(
    uid="wsinfra-uptime",
    title="wsinfra / Uptime",
    description="Synthetic probes of the platform from every probe region: whether each target answers, how fast, through which phases, and its TLS and security-header hygiene.",
    tags=[*TAGS, "uptime"],
    variables=[TARGET, PROBE_REGION],
    panels=[
        table(
            "Targets now",
            "One row per target: up from how many regions, slowest response, and days until its TLS certificate expires (blank for plain HTTP/TCP).",
            "none",
            [
                Prom(f"sum by (target) (uptime_probe_success{{{SEL}}})", instant=True, table=True),
                Prom(
                    f"count by (target) (uptime_probe_success{{{SEL}}})", instant=True, table=True
                ),
                Prom(
                    f"max by (target) (uptime_probe_duration_seconds{{{SEL}}})",
                    instant=True,
                    table=True,
                ),
            ],
            hide=["Time"],
            rename={
                "Value #A": "regions up",
                "Value #B": "regions probing",
                "Value #C": "slowest (s)",
            },
            links=[runbook("UptimeTargetDown")],
            new_row="Now",
        ),
        timeseries(
            "Probe success by target and region",
            "1 = the latest probe (after its confirmation retry) succeeded; 0 = failed.",
            "none",
            [Prom(f"uptime_probe_success{{{SEL}}}", "{{target}} {{region}}")],
            minimum=0,
            maximum=1,
            links=[runbook("UptimeTargetDown"), runbook("UptimeProbeLocationFailing")],
            new_row="Success and latency",
        ),
        timeseries(
            "Failures per second by target",
            "Failed probes per second (after confirmation), the SLO's raw material.",
            "ops",
            [
                Prom(
                    f"sum by (target) (rate(uptime_probe_failures_total{{{SEL}}}[$__rate_interval]))",
                    "{{target}}",
                )
            ],
        ),
        timeseries(
            "Response time by target and region",
            "Total probe time, redirects included.",
            "s",
            [Prom(f"uptime_probe_duration_seconds{{{SEL}}}", "{{target}} {{region}}")],
            thresholds=PROBE_TIME_STEPS,
            links=[runbook("UptimeResponseTimeHigh")],
        ),
        timeseries(
            "Latency phases (average over the selection)",
            "Where the time goes: resolve (DNS), connect (TCP), tls (handshake), processing (server, to first byte), transfer (body).",
            "s",
            [Prom(f"avg by (phase) (uptime_probe_phase_duration_seconds{{{SEL}}})", "{{phase}}")],
            stack=True,
        ),
        table(
            "TLS certificates",
            f"Per HTTPS target: time until the earliest certificate in the chain expires (warning under {U.tls.warning_days} days, error under {U.tls.error_days}).",
            "s",
            [
                Prom(
                    f"min by (target) (uptime_probe_tls_cert_expiry_timestamp_seconds{{{SEL}}}) - time()",
                    instant=True,
                    table=True,
                )
            ],
            thresholds=[
                (None, "red"),
                (U.tls.error_days * DAY, "orange"),
                (U.tls.warning_days * DAY, "green"),
            ],
            hide=["Time"],
            rename={"Value": "expires in"},
            links=[runbook("UptimeTLSCertExpiring")],
            w=10,
            new_row="Hygiene",
        ),
        table(
            "Security headers",
            "Per HTTP target and header: 1 = present on the final response (HSTS, CSP, X-Content-Type-Options, X-Frame-Options or frame-ancestors).",
            "none",
            [
                Prom(
                    f"min by (target, header) (uptime_probe_security_header_present{{{SEL}}})",
                    instant=True,
                    table=True,
                )
            ],
            thresholds=[(None, "red"), (1, "green")],
            hide=["Time"],
            rename={"Value": "present"},
            links=[runbook("UptimeSecurityHeaderMissing")],
            w=14,
        ),
        timeseries(
            "HTTP status codes",
            "Final status code of the latest probe per HTTP target and region.",
            "none",
            [Prom(f"uptime_probe_http_status_code{{{SEL}}}", "{{target}} {{region}}")],
        ),
        timeseries(
            "Probe retries",
            "Confirmation retries per second: failures that were re-tried before counting (flaky targets show here first).",
            "ops",
            [
                Prom(
                    f"sum by (target) (rate(uptime_probe_retries_total{{{SEL}}}[$__rate_interval]))",
                    "{{target}}",
                )
            ],
        ),
    ],
)
