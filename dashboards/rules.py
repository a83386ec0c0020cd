"""The alert rules' config the dashboards are drawn from: the same checked model the rule
templates render (alert_rules/config.py), so a threshold, SLO, window or runbook link on a panel
is the one the alert uses.

It is alert_rules/config.yaml unless `python -m dashboards build --config` chose another file.
Dashboards are module-level values built at import, so the choice is made once per process,
before the first dashboard module is imported; choosing another afterwards is refused.
"""

from __future__ import annotations

from pathlib import Path

from alert_rules.config import CONFIG, AlertRulesConfig, load_rules

_path: Path = CONFIG
_loaded: AlertRulesConfig | None = None


def use(path: Path) -> None:
    """Draw the dashboards from `path` (before any dashboard module is imported)."""
    global _path
    if _loaded is not None and path.resolve() != _path.resolve():
        raise RuntimeError(f"dashboards are already drawn from {_path}; {path} needs a new process")
    _path = path


def rules() -> AlertRulesConfig:
    """The model, loaded on first use; raises common.config.ConfigError for a bad file."""
    global _loaded
    if _loaded is None:
        _loaded = load_rules(_path)
    return _loaded
