"""The collector: billing_* metric families from one immutable Snapshot (costs in US dollars).

Pure: it reads nothing but the snapshot. `billing_build_info`, `billing_up` and
`billing_scrape_duration_seconds` come from the shared exporter app (common.exporter).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters.billing.figures import days_in_month
from exporters.billing.focus import REJECT_REASONS
from exporters.billing.snapshot import COST_TRACKING_REASONS, Snapshot
from exporters.billing.sources import ERROR_REASONS

CACHED = "Refreshed in the background (hourly by default); /metrics serves the last refresh."
UP_HELP = "1 if every source's last refresh succeeded. " + CACHED


def collect(snap: Snapshot) -> Iterator[Metric]:
    up = GaugeMetricFamily(
        "billing_source_up", "1 if the source's last refresh succeeded.", labels=["source"]
    )
    last = GaugeMetricFamily(
        "billing_source_last_success_timestamp_seconds",
        "When the source last delivered without error.",
        labels=["source"],
    )
    dur = GaugeMetricFamily(
        "billing_source_refresh_duration_seconds",
        "How long the source's last refresh took.",
        labels=["source"],
    )
    newest = GaugeMetricFamily(
        "billing_source_newest_data_timestamp_seconds",
        "End of the newest charge period the source has delivered.",
        labels=["source"],
    )
    age = GaugeMetricFamily(
        "billing_source_max_data_age_seconds",
        "Configured: the source has stopped delivering once its newest data is older than this.",
        labels=["source"],
    )
    reqs = CounterMetricFamily(
        "billing_source_requests", "HTTP requests made to the source's API.", labels=["source"]
    )
    errs = CounterMetricFamily(
        "billing_source_errors",
        "Failed refreshes of the source, by reason.",
        labels=["source", "reason"],
    )
    rows = CounterMetricFamily(
        "billing_rows", "FOCUS rows accepted (each refresh re-reads its window).", labels=["source"]
    )
    rej = CounterMetricFamily(
        "billing_rows_rejected",
        "FOCUS rows skipped (not summed), by reason: missing or bad column, other currency, …; "
        "a bad row still in the source counts again at every refresh.",
        labels=["source", "reason"],
    )
    for st in snap.sources:
        name = st.name
        up.add_metric([name], 1.0 if st.up else 0.0)
        if st.last_success is not None:
            last.add_metric([name], st.last_success)
        if st.refresh_seconds is not None:
            dur.add_metric([name], st.refresh_seconds)
        if st.newest_data is not None:
            newest.add_metric([name], st.newest_data)
        age.add_metric([name], st.max_data_age)
        reqs.add_metric([name], st.requests)
        for reason in ERROR_REASONS:
            errs.add_metric([name, reason], st.errors.get(reason, 0))
        rows.add_metric([name], st.rows)
        for reason in REJECT_REASONS:
            rej.add_metric([name, reason], st.rejected.get(reason, 0))
    yield from (up, last, dur, newest, age, reqs, errs, rows, rej)
    yield GaugeMetricFamily(
        "billing_monthly_budget_usd",
        "The configured monthly budget, US dollars.",
        value=float(snap.monthly_budget_usd),
    )
    ct = snap.cost_tracking
    if ct is not None:
        if ct.last_success is not None:
            yield GaugeMetricFamily(
                "billing_cost_tracking_last_success_timestamp_seconds",
                "When cost_tracking was last written.",
                value=ct.last_success,
            )
        errors = CounterMetricFamily(
            "billing_cost_tracking_errors",
            "Failed writes to cost_tracking, by reason.",
            labels=["reason"],
        )
        for reason in COST_TRACKING_REASONS:
            errors.add_metric([reason], ct.errors.get(reason, 0))
        yield errors
    f = snap.figures
    if f is None:
        return
    labels = ["provider", "service_category", "charge_category"]
    billed = GaugeMetricFamily(
        "billing_month_to_date_billed_cost_usd",
        "This UTC month's billed cost so far (invoice basis), US dollars. " + CACHED,
        labels=labels,
    )
    effective = GaugeMetricFamily(
        "billing_month_to_date_effective_cost_usd",
        "This UTC month's effective cost so far (after discounts, amortised), US dollars. "
        + CACHED,
        labels=labels,
    )
    for (prov, svc_cat, charge), t in sorted(
        f.current.by("provider", "service_category", "charge_category").items()
    ):
        billed.add_metric([prov, svc_cat, charge], float(t.billed))
        effective.add_metric([prov, svc_cat, charge], float(t.effective))
    services = GaugeMetricFamily(
        "billing_month_to_date_service_cost_usd",
        'This month\'s effective cost by service: the top N services, the rest as service="other". '
        + CACHED,
        labels=["provider", "service"],
    )
    for (prov, service), cost in sorted(f.services.items()):
        services.add_metric([prov, service], float(cost))
    proj = GaugeMetricFamily(
        "billing_month_end_projected_cost_usd",
        "Projected month-end billed cost: month to date plus the 7-day usage run rate times the days "
        "left (method usage_run_rate_7d), or the month's own total where the provider bills by "
        "the month (method billed_whole_month). " + CACHED,
        labels=["provider", "method"],
    )
    rate = GaugeMetricFamily(
        "billing_usage_run_rate_usd_per_day",
        "Mean daily usage cost over the last 7 complete UTC days. " + CACHED,
        labels=["provider"],
    )
    for prov, v in sorted(f.current.projection.items()):
        proj.add_metric([prov, f.current.method[prov]], float(v))
        rate.add_metric([prov], float(f.current.run_rate[prov]))
    prev = GaugeMetricFamily(
        "billing_previous_month_cost_usd",
        "Last UTC month's billed cost (as restated so far), US dollars. " + CACHED,
        labels=["provider"],
    )
    for prov in f.previous.providers():
        prev.add_metric([prov], float(f.previous.billed(prov)))
    day = GaugeMetricFamily(
        "billing_last_day_usage_cost_usd",
        "Yesterday's (UTC) usage cost, US dollars. " + CACHED,
        labels=["provider"],
    )
    base = GaugeMetricFamily(
        "billing_daily_usage_baseline_usd",
        "Mean daily usage cost over the 14 days before yesterday, US dollars. " + CACHED,
        labels=["provider"],
    )
    for prov, s in sorted(f.spikes.items()):
        day.add_metric([prov], float(s.cost))
        base.add_metric([prov], float(s.baseline))
    elapsed = (f.today - f.current.start).days / days_in_month(f.current.start)
    yield from (billed, effective, services, proj, rate, prev, day, base)
    recs = GaugeMetricFamily(
        "billing_recommendation_potential_savings_usd",
        "Estimated monthly saving of a cost recommendation (exporters/billing/recommendations.py "
        "rules), the largest ten; effort_level is low, medium or high. " + CACHED,
        labels=["rule", "provider", "service", "effort_level"],
    )
    for r in snap.recommendations:
        recs.add_metric(
            [r.rule, r.provider, r.service, r.effort_level], float(r.potential_savings_usd)
        )
    yield recs
    yield GaugeMetricFamily(
        "billing_month_elapsed_ratio",
        "Share of the UTC month completed (whole days before today / days in the month).",
        value=elapsed,
    )
