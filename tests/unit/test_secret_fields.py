"""Every config key naming a file that holds a secret is typed SecretFile, so every service
reads it at start through common.config.read_secret_files and reports a bad one with its key.
A new `*_file` key that is a plain Path fails here until it is typed, or allowlisted with why."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel

from common.config import is_secret_field

PACKAGES = ("common", "exporters", "recorder", "api")
# (module.Model, field) of `*_file` paths that are not secrets.
NOT_SECRETS = {
    # Where the Vercel exporter remembers which deployments it counted: state it writes.
    ("exporters.vercel.config.Api", "state_file"),
    # Maintenance windows declared as code: a reviewed file of times and services, no secret.
    ("api.maintenance_config.MaintenanceSettings", "windows_file"),
}


def _models() -> list[type[BaseModel]]:
    """Every pydantic model defined in our packages (each module imported first)."""
    for top in PACKAGES:
        package = importlib.import_module(top)
        for info in pkgutil.walk_packages(package.__path__, f"{top}."):
            if not info.name.endswith(".__main__"):  # that one runs the command
                importlib.import_module(info.name)
    found: list[type[BaseModel]] = []
    stack = list(BaseModel.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.__module__.split(".")[0] in PACKAGES and cls not in found:
            found.append(cls)
    return found


def _mentions_path(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return True
    return any(_mentions_path(arg) for arg in get_args(annotation))


def _file_fields() -> dict[tuple[str, str], bool]:
    """(module.Model, field) of every `*_file` Path field: whether it is a SecretFile."""
    out = {}
    for model in _models():
        for name, info in model.model_fields.items():
            if name.endswith("_file") and _mentions_path(info.annotation):
                out[(f"{model.__module__}.{model.__qualname__}", name)] = is_secret_field(info)
    return out


def test_every_file_key_is_a_secret_file_or_allowlisted() -> None:
    fields = _file_fields()
    plain = sorted(k for k, secret in fields.items() if not secret and k not in NOT_SECRETS)
    assert plain == [], f"type these SecretFile, or add them to NOT_SECRETS saying why: {plain}"
    wrongly_allowed = sorted(k for k in NOT_SECRETS if fields.get(k) is not False)
    assert wrongly_allowed == [], (
        f"gone or now a SecretFile; drop from NOT_SECRETS: {wrongly_allowed}"
    )


def test_the_known_secrets_are_seen() -> None:
    # Guards the walk itself: these must be found (and typed), or the test above proves nothing.
    secrets = {k for k, secret in _file_fields().items() if secret}
    assert {
        ("common.postgres.PgConnection", "password_file"),
        ("exporters.uptime.config.HttpProbe", "bearer_token_file"),
        ("exporters.vercel.config.Api", "token_file"),
        ("exporters.vercel.config.Drain", "secret_file"),
        ("exporters.vercel.config.Drains", "verify_code_file"),
        ("exporters.supabase.config.Database", "password_file"),
        ("exporters.supabase.config.Management", "token_file"),
        ("exporters.billing.config._Api", "token_file"),
        ("recorder.config.Webhooks", "alertmanager_token_file"),
        ("recorder.config.Webhooks", "vercel_secret_file"),
        ("recorder.config.Webhooks", "github_secret_file"),
        ("api.config.Auth", "jwt_secret_file"),
        ("api.config.MachineToken", "token_file"),
    } <= secrets
