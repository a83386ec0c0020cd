"""The recorder's config file: where Postgres is, and the files that hold its secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from common.config import SecretFile, Strict, read_secret_files
from common.postgres import PgConnection


class Database(PgConnection):
    """The recorder's database (common.postgres): `acquire_timeout` is how long a webhook waits
    for a connection before it is journaled instead."""


class Webhooks(Strict):
    # Bearer token Alertmanager sends (http_config.authorization.credentials_file).
    alertmanager_token_file: SecretFile
    # Vercel's webhook secret (x-vercel-signature, HMAC-SHA1) and endpoint-verification code.
    vercel_secret_file: SecretFile | None = None
    vercel_verify_code: str | None = None
    # GitHub's webhook secret (X-Hub-Signature-256).
    github_secret_file: SecretFile | None = None
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

    def __init__(
        self,
        alertmanager_token: bytes,
        vercel_secret: bytes | None = None,
        github_secret: bytes | None = None,
    ) -> None:
        self.alertmanager_token = alertmanager_token
        self.vercel_secret = vercel_secret
        self.github_secret = github_secret

    @classmethod
    def read(cls, cfg: RecorderConfig, path: Path) -> Secrets:
        """Every secret file `cfg` (loaded from `path`) names, read now: a ConfigError lists
        each missing, unreadable, empty or placeholder one with its key. The database password
        is only checked here; common.postgres reads it again at each new connection."""
        values = read_secret_files(cfg, path)

        def webhook(key: str) -> bytes | None:
            value = values.get(f"webhooks.{key}")
            return None if value is None else value.encode()

        token = webhook("alertmanager_token_file")
        assert token is not None  # a required key, and read_secret_files refused it unread
        return cls(token, webhook("vercel_secret_file"), webhook("github_secret_file"))

    def __repr__(self) -> str:
        return "Secrets(<redacted>)"
