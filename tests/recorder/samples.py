"""Webhook bodies shaped as Alertmanager, Vercel and GitHub send them (../shared/apis.md)."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

TOKEN = "am-token-value-do-not-leak"
VERCEL_SECRET = b"vercel-secret-do-not-leak"
GITHUB_SECRET = b"github-secret-do-not-leak"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def am_alert(
    name: str = "UptimeTargetDown",
    *,
    fingerprint: str = "a1b2c3d4e5f60718",
    status: str = "firing",
    starts: str = "2026-11-25T10:00:05.123456789Z",
    ends: str = "0001-01-01T00:00:00Z",
    **labels: str,
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {
            "alertname": name,
            "severity": "critical",
            "service": "web",
            "target": "web",
            **labels,
        },
        "annotations": {
            "summary": "Uptime target is down from a quorum of probe regions.",
            "description": "web (web) fails from 100% of probe regions.",
            "value": "1",
            "threshold": "0.5",
        },
        "startsAt": starts,
        "endsAt": ends,
        "generatorURL": "http://prometheus:9090/graph?g0.expr=x",
        "fingerprint": fingerprint,
    }


def am_payload(
    alerts: list[dict[str, Any]], status: str = "firing", receiver: str = "recorder"
) -> bytes:
    return json.dumps(
        {
            "version": "4",
            "groupKey": '{}/{}:{alertname="UptimeTargetDown"}',
            "truncatedAlerts": 0,
            "status": status,
            "receiver": receiver,
            "groupLabels": {"alertname": "UptimeTargetDown"},
            "commonLabels": {},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093",
            "alerts": alerts,
        }
    ).encode()


def vercel_event(
    kind: str,
    dep_id: str = "dpl_2euZBFqxYdDMDG1jTrHFnNZ2eUVa",
    *,
    delivery: str = "uHP1oYvhXr4ZJ2bR0s6Ed8qK",
    created_ms: int = 1717600095000,
    target: str | None = "production",
) -> bytes:
    return json.dumps(
        {
            "id": delivery,
            "type": kind,
            "createdAt": created_ms,
            "region": "sfo1",
            "payload": {
                "team": {"id": "team_1a2b3c4d5e6f7g8h9i0j1k2l"},
                "user": {"id": "eLrCnEgbKhsHyfbiNR7E8496"},
                "deployment": {
                    "id": dep_id,
                    "meta": {
                        "githubCommitSha": "de8b89f1a2b3c4d5e6f708192a3b4c5d6e7f8091",
                        "githubCommitRef": "main",
                    },
                    "url": "web-9jaeg38me-acme.vercel.app",
                    "name": "web",
                },
                "links": {
                    "deployment": "https://vercel.com/acme/web/x",
                    "project": "https://vercel.com/acme/web",
                },
                "target": target,
                "project": {"id": "prj_12HKQaOmR5t5Uy6vdcQsNIiZgHGB"},
                "plan": "pro",
                "regions": ["iad1"],
            },
        }
    ).encode()


def vercel_signature(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha1).hexdigest()


def github_deployment_status(
    state: str, *, dep_id: int = 145988746, updated: str = "2019-05-15T15:20:55Z"
) -> bytes:
    deployment = {
        "url": f"https://api.github.com/repos/Codertocat/Hello-World/deployments/{dep_id}",
        "id": dep_id,
        "sha": "f95f852bd8fca8fcc58a9a2d6c842781e32a215e",
        "ref": "master",
        "task": "deploy",
        "payload": {},
        "original_environment": "production",
        "environment": "production",
        "description": None,
        "creator": {"login": "Codertocat", "id": 21031067},
        "created_at": "2019-05-15T15:20:53Z",
        "updated_at": updated,
    }
    return json.dumps(
        {
            "action": "created",
            "deployment_status": {
                "id": 209916254,
                "state": state,
                "creator": {"login": "Codertocat", "id": 21031067, "type": "User"},
                "description": "",
                "environment": "production",
                "target_url": "",
                "environment_url": "https://hello-world.example.com",
                "created_at": updated,
                "updated_at": updated,
            },
            "deployment": deployment,
            "repository": {
                "id": 186853002,
                "name": "Hello-World",
                "full_name": "Codertocat/Hello-World",
                "private": False,
            },
            "sender": {"login": "Codertocat", "id": 21031067, "type": "User"},
        }
    ).encode()


def github_signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
