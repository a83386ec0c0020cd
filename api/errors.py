"""Every refusal the API answers: a closed code (the `error` field and a metric label), a
human reason, and its HTTP status. Handlers raise ApiError; app.py turns it into JSON."""

from __future__ import annotations

from collections.abc import Mapping

# code → HTTP status. The code is `error` in the body and `reason` in
# api_requests_rejected_total, so this list is the label's whole value set.
STATUS = {
    # 400/413/415/422: the request itself (common.ingress raises the first three codes too).
    "invalid_json": 400,
    "too_large": 413,
    "unsupported_media_type": 415,
    "invalid_request": 422,
    # 401: who is calling could not be established.
    "missing_token": 401,
    "malformed_token": 401,
    "bad_signature": 401,
    "expired": 401,
    "not_yet_valid": 401,
    "wrong_audience": 401,
    "wrong_issuer": 401,
    "missing_claim": 401,
    "unsupported_algorithm": 401,
    "unknown_key": 401,
    "not_a_user": 401,
    # 401 at the PagerDuty webhook: no X-PagerDuty-Signature, or none that verifies.
    "missing_signature": 401,
    "invalid_signature": 401,
    # 403/404/409: the database's row-level security, or the row's state, says no.
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "already_resolved": 409,
    # A maintenance window that overlaps another of a same service, or would take a service
    # over its monthly maintenance budget, or is already over.
    "maintenance_conflict": 409,
    # A backup of the target is already requested or running, or a disaster-recovery restore
    # into the restore target is (api/backups.py, api/disaster_recovery.py).
    "backup_conflict": 409,
    # 5xx: something we depend on is not answering; nothing was written.
    "internal": 500,
    "alertmanager_refused": 502,
    "alertmanager_unavailable": 503,
    # A Vercel deploy hook: refused (4xx, e.g. deleted) or answered without a job; unreachable.
    "vercel_refused": 502,
    "vercel_unavailable": 503,
    "db_unavailable": 503,
    "jwks_unavailable": 503,
    "prometheus_unavailable": 503,
    "machine_user_unprovisioned": 503,
}
REASONS = tuple(STATUS)


class ApiError(Exception):
    """A refusal with a closed `code` (see STATUS) and a `reason` for the caller, which never
    holds a token or another secret."""

    def __init__(self, code: str, reason: str, headers: Mapping[str, str] | None = None) -> None:
        if code not in STATUS:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.status = STATUS[code]
        self.headers = dict(headers or {})
