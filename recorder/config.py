"""The recorder's config file: where Postgres is, and the files that hold its secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from common.config import Strict, read_secret_file
from common.postgres import PgConnection


class Database(PgConnection):
    """The recorder's database (common.postgres): `acquire_timeout` is how long a webhook waits
    for a connection before it is journaled instead."""


class Webhooks(Strict):
    # Bearer token Alertmanager sends (http_config.authorization.credentials_file).
    alertmanager_token_file: Path
    # Vercel's webhook secret (x-vercel-signature, HMAC-SHA1) and endpoint-verification code.
    vercel_secret_file: Path | None = None
    vercel_verify_code: str | None = None
    # GitHub's webhook secret (X-Hub-Signature-256).
    github_secret_file: Path | None = None
    # Largest body accepted; Alertmanager's 1,000-alert notifications are about 1.5 MB.
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 8 * 1024 * 1024


class JournalSettings(Strict):
    # Where webhooks wait while the database is unavailable (a local disk: every append is
    # fsync'd before the 200). Survives restarts; one directory per recorder replica.
    directory: Path = Path("/var/lib/wsinfra/recorder/journal")
    # At this size new webhooks are answered 503 (Alertmanager then keeps and retries them).
    max_bytes: Annotated[int, Field(ge=1024 * 1024, le=64 * 1024**3)] = 256 * 1024 * 1024


class RunbookSettings(Strict):
    # The Markdown runbooks served at /runbooks/ (every alert's runbook_url points there by
    # default); unset: the repository's runbooks/, which the image copies beside the code.
    directory: Path | None = None


class RecorderConfig(Strict):
    database: Database
    webhooks: Webhooks
    journal: JournalSettings = JournalSettings()
    runbooks: RunbookSettings = RunbookSettings()


class Secrets:
    """Secret values read once at start; repr never shows them."""

    __slots__ = ("alertmanager_token", "github_secret", "vercel_secret")

    def __init__(self, cfg: Webhooks) -> None:
        self.alertmanager_token = read_secret_file(cfg.alertmanager_token_file).encode()
        self.vercel_secret = (
            read_secret_file(cfg.vercel_secret_file).encode() if cfg.vercel_secret_file else None
        )
        self.github_secret = (
            read_secret_file(cfg.github_secret_file).encode() if cfg.github_secret_file else None
        )
        if not self.alertmanager_token:
            raise ValueError(f"{cfg.alertmanager_token_file} is empty")

    def __repr__(self) -> str:
        return "Secrets(<redacted>)"
