"""Prometheus's HTTP API, as far as the operator API reads it: instant and range queries whose
PromQL is always ours (api/health.py, api/metric_catalogue.py, api/costs.py), never a caller's.

Failures become PrometheusUnavailable (no answer, a timeout, a 5xx, a body that is not
Prometheus's) or PrometheusRefused (a 4xx: our query is wrong, a defect to fix, not to retry);
the handlers turn both into a 503 `prometheus_unavailable`, never a 500.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import httpx


class PrometheusError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PrometheusUnavailable(PrometheusError):
    """No answer, a timeout, a 5xx or a body we cannot read."""


class PrometheusRefused(PrometheusError):
    """A 4xx (bad_data: our PromQL or parameters are wrong)."""


@dataclass(frozen=True, slots=True)
class Sample:
    labels: dict[str, str]
    at: float
    value: float


@dataclass(frozen=True, slots=True)
class Series:
    labels: dict[str, str]
    # (unix time, value) in time order; NaN and ±Inf points are kept as Prometheus gave them.
    points: tuple[tuple[float, float], ...]


def _number(raw: Any) -> float:
    # Prometheus sends sample values as strings ("1.5", "NaN", "+Inf").
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise PrometheusUnavailable("a sample value is not a number") from None


class Prometheus:
    def __init__(self, base_url: str, client: httpx.AsyncClient, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = client
        self.timeout = timeout

    async def _data(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        try:
            # POST with a form: long queries stay out of URLs (and access logs).
            resp = await self.client.post(
                f"{self.base_url}{path}", data=params, timeout=self.timeout
            )
        except httpx.HTTPError as exc:
            raise PrometheusUnavailable(type(exc).__name__) from None
        if resp.status_code >= 500:
            raise PrometheusUnavailable(f"HTTP {resp.status_code}")
        try:
            body = resp.json()
        except ValueError:
            raise PrometheusUnavailable(f"HTTP {resp.status_code}, answer is not JSON") from None
        if resp.status_code >= 400 or not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error", "") if isinstance(body, dict) else ""
            raise PrometheusRefused(f"HTTP {resp.status_code}: {str(error)[:200]}")
        data = body.get("data")
        if not isinstance(data, dict):
            raise PrometheusUnavailable("answer has no data")
        return data

    async def query(self, promql: str, at: float | None = None) -> list[Sample]:
        """An instant query that must return a vector (scalars are wrapped by the caller's
        PromQL with vector())."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = await self._data("/api/v1/query", params)
        if data.get("resultType") != "vector" or not isinstance(data.get("result"), list):
            raise PrometheusRefused(f"expected a vector, got {data.get('resultType')!r}")
        out = []
        for item in data["result"]:
            try:
                at_raw, value_raw = item["value"]
                out.append(Sample(dict(item["metric"]), float(at_raw), _number(value_raw)))
            except (KeyError, TypeError, ValueError):
                raise PrometheusUnavailable("a sample is malformed") from None
        return out

    async def query_range(self, promql: str, start: float, end: float, step: float) -> list[Series]:
        data = await self._data(
            "/api/v1/query_range",
            {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"},
        )
        if data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
            raise PrometheusRefused(f"expected a matrix, got {data.get('resultType')!r}")
        out = []
        for item in data["result"]:
            try:
                points = tuple((float(t), _number(v)) for t, v in item["values"])
                out.append(Series(dict(item["metric"]), points))
            except (KeyError, TypeError, ValueError):
                raise PrometheusUnavailable("a series is malformed") from None
        return out


def finite(value: float) -> float | None:
    """A value fit for JSON: NaN and ±Inf (a division by zero in a rule) become None."""
    return value if math.isfinite(value) else None
