"""Prometheus-style durations ("500ms", "15s", "1m30s") as a pydantic-validated type."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: object) -> float:
    """Return seconds for a Prometheus duration string; bare numbers are refused on purpose.

    A bare number is ambiguous (seconds? milliseconds?) and is the most common config slip.
    """
    if not isinstance(value, str) or not value:
        raise ValueError("must be a duration string such as '500ms', '15s' or '1m'")
    pos = 0
    total = 0.0
    for match in _PART.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(value):
        raise ValueError(f"{value!r} is not a duration (use e.g. '500ms', '15s', '1m')")
    if total <= 0:
        raise ValueError(f"{value!r} must be greater than zero")
    return total


Duration = Annotated[float, BeforeValidator(parse_duration)]
