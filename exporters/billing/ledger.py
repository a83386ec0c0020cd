"""Every source's charges by UTC day, where a newer delivery of a day replaces the older one.

Providers restate: a day fetched again tomorrow may carry corrections, and overlapping fetch
windows return the same rows twice. Both are handled the same way: a delivery says which days
it covers, and those days of that source are replaced as a whole (a covered day with no rows
becomes empty). Nothing is ever added on top of an earlier copy of the same day.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date

from exporters.billing.focus import DayBook, Key, Totals


class Ledger:
    def __init__(self) -> None:
        self.books: dict[str, DayBook] = {}

    def replace(self, source: str, covered: Iterable[date], days: DayBook) -> None:
        book = self.books.setdefault(source, {})
        for d in covered:
            book.pop(d, None)
        for d, keys in days.items():
            book[d] = keys

    def replace_all(self, source: str, days: DayBook) -> None:
        self.books[source] = dict(days)

    def apply(self, source: str, covered: Iterable[date] | None, days: DayBook) -> None:
        """A delivery: it speaks for `covered` days, or (None) for all of the source's data."""
        if covered is None:
            self.replace_all(source, days)
        else:
            self.replace(source, covered, days)

    def prune(self, before: date) -> None:
        """Forget days older than `before` (the exporter keeps a few months, not forever)."""
        for book in self.books.values():
            for d in [d for d in book if d < before]:
                del book[d]

    def entries(self, start: date, end: date) -> Iterator[tuple[date, Key, Totals]]:
        """Every (day, key, totals) with start <= day < end, across sources."""
        for book in self.books.values():
            for d, keys in book.items():
                if start <= d < end:
                    for k, t in keys.items():
                        yield d, k, t

    def total(self, start: date, end: date) -> dict[Key, Totals]:
        out: dict[Key, Totals] = {}
        for _, k, t in self.entries(start, end):
            have = out.get(k)
            if have is None:
                out[k] = Totals(t.billed, t.effective, t.quantity, t.rows)
            else:
                have.add(t)
        return out
