"""Label values from drain records, each mapped onto a small fixed set.

Drain records are written by the internet (paths, countries, user agents): every value that
becomes a label passes through one of these functions, and anything unexpected becomes
"other" or "unknown" rather than a new series.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

# Vercel's published compute/edge region codes (vercel.com/docs/regions). Any other value (a
# new region, a typo, a string from the internet) is counted as "other", not a new series.
REGIONS = frozenset(
    {
        "arn1",  # Stockholm
        "bom1",  # Mumbai
        "cdg1",  # Paris
        "cle1",  # Cleveland
        "cpt1",  # Cape Town
        "dub1",  # Dublin
        "dxb1",  # Dubai
        "fra1",  # Frankfurt
        "gru1",  # São Paulo
        "hkg1",  # Hong Kong
        "hnd1",  # Tokyo
        "iad1",  # Washington, D.C.
        "icn1",  # Seoul
        "kix1",  # Osaka
        "lhr1",  # London
        "pdx1",  # Portland
        "sfo1",  # San Francisco
        "sin1",  # Singapore
        "syd1",  # Sydney
        "yul1",  # Montréal
    }
)
ENVIRONMENTS = frozenset({"production", "preview"})
CACHE = frozenset({"MISS", "HIT", "STALE", "BYPASS", "PRERENDER", "REVALIDATED"})
PATH_TYPES = frozenset(
    {
        "func",
        "prerender",
        "background_func",
        "edge",
        "middleware",
        "streaming_func",
        "partial_prerender",
        "external",
        "static",
        "not_found",
        "unknown",
        "api",
    }
)
WAF_ACTIONS = frozenset({"log", "challenge", "deny", "bypass", "rate_limit"})
LOG_SOURCES = frozenset({"build", "edge", "lambda", "static", "external", "firewall", "redirect"})
DEVICES = frozenset({"desktop", "mobile", "tablet"})
VITALS_SECONDS = frozenset({"LCP", "FCP", "INP", "TTFB", "FID"})

# ISO 3166-1 alpha-2 → continent bucket. Countries are too many for a label on a histogram
# (250 countries, times routes, devices and buckets); continents match how latency differs in practice.
_CONTINENTS = {
    "na": "US CA MX GT BZ SV HN NI CR PA CU DO HT JM BS BB TT AG DM GD KN LC VC PR VI VG AI BM KY TC MS AW CW SX BQ MF BL PM GL GP MQ",
    "sa": "AR BO BR CL CO EC GY PY PE SR UY VE FK GF GS",
    "eu": "AD AL AT AX BA BE BG BY CH CY CZ DE DK EE ES FI FO FR GB GG GI GR HR HU IE IM IS IT JE LI LT LU LV MC MD ME MK MT NL NO PL PT RO RS RU SE SI SJ SK SM UA VA XK",
    "af": "DZ AO BJ BW BF BI CV CM CF TD KM CD CG CI DJ EG GQ ER SZ ET GA GM GH GN GW KE LS LR LY MG MW ML MR MU YT MA MZ NA NE NG RE RW SH ST SN SC SL SO ZA SS SD TZ TG TN UG EH ZM ZW",
    "as": "AF AM AZ BH BD BT BN KH CN GE HK IN ID IR IQ IL JP JO KZ KW KG LA LB MO MY MV MN MM NP KP OM PK PS PH QA SA SG KR LK SY TW TJ TH TL TR TM AE UZ VN YE IO",
    "oc": "AS AU CK FJ PF GU KI MH FM NR NC NZ NU NF MP PW PG PN WS SB TK TO TV UM VU WF CX CC HM",
}
CONTINENT = {c: bucket for bucket, codes in _CONTINENTS.items() for c in codes.split()}


def environment(value: object) -> str:
    return value if isinstance(value, str) and value in ENVIRONMENTS else "unknown"


def region(value: object) -> str:
    if value is None or value == "":
        return "unknown"
    return value if isinstance(value, str) and value in REGIONS else "other"


def status_class(code: object) -> str:
    """ "2xx"… for an HTTP status; "none" for Vercel's -1 (no response: the function crashed)."""
    if isinstance(code, bool):
        return "unknown"
    if isinstance(code, str) and len(code) <= 3 and code.isascii() and code.isdigit():
        code = int(code)
    if isinstance(code, int | float):
        if code == -1:
            return "none"
        if 100 <= code <= 599:
            return f"{int(code) // 100}xx"
    return "unknown"


def one_of(value: object, allowed: frozenset[str], missing: str = "none") -> str:
    if value is None or value == "":
        return missing
    return value if isinstance(value, str) and value in allowed else "other"


def geo(country: object) -> str:
    if isinstance(country, str):
        return CONTINENT.get(country.upper(), "other")
    return "unknown"


class Projects:
    """Vercel project id → the configured name; ids not in the config share one value."""

    def __init__(self, names: dict[str, str]) -> None:
        self._names = dict(names)

    def __call__(self, project_id: object) -> str:
        return (
            self._names.get(project_id, "unlisted") if isinstance(project_id, str) else "unlisted"
        )

    def names(self) -> list[str]:
        return sorted(self._names.values())


class Routes:
    """Route templates admitted per project: the pinned ones, then the first `limit` seen.

    Admission, not a moving top-N: a route keeps its series once admitted, so its history
    does not flip between a name and "other" as traffic shifts. A restart re-admits in order
    of arrival; pin the routes that matter in the config to keep them named for good.
    """

    def __init__(self, pinned: Iterable[str], limit: int) -> None:
        self._pinned = frozenset(pinned)
        self._limit = limit
        self._admitted: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def __call__(self, project: str, route: object) -> str:
        if not isinstance(route, str) or not route:
            return "unknown"
        route = route.split("?", 1)[0]
        if not route.startswith("/") or len(route) > 200:
            return "other"
        if route in self._pinned:
            return route
        seen = self._admitted.get(project)
        if seen is not None and route in seen:
            return route
        with self._lock:
            seen = self._admitted.setdefault(project, set())
            if route in seen:
                return route
            if len(seen) < self._limit:
                seen.add(route)
                return route
        return "other"
