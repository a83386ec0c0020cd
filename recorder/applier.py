"""Apply the journal to PostgreSQL in order, exactly once, whenever the database is reachable."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from recorder.journal import Journal, Record
from recorder.store import StoreRefused, StoreUnavailable, Write

log = logging.getLogger(__name__)


class JournalStore(Protocol):
    async def apply_journaled(self, journal_id: str, seq: int, write: Write) -> bool: ...
    async def load_latest(self) -> None: ...


class Applier:
    """One background task. `writer` turns a record into its writes, or raises ValueError for a
    record this version cannot read (counted and dropped: retrying could never succeed)."""

    def __init__(
        self,
        journal: Journal,
        store: JournalStore,
        writer: Callable[[Record], Write],
        *,
        max_delay: float = 5.0,
    ) -> None:
        self.journal = journal
        self.store = store
        self.writer = writer
        self.max_delay = max_delay
        self.applied = 0
        self.replayed = 0
        self.dropped: dict[str, int] = {"unreadable": 0, "refused": 0}
        self.failures = 0
        self.last_error = ""
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        delay = 0.25
        while True:
            if not self.journal.pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                await self.drain()
                delay = 0.25
            except StoreUnavailable as exc:
                self.failures += 1
                self.last_error = str(exc)
                # Back off, but a new record (or a test) can wake us early.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                self._wake.clear()
                delay = min(delay * 2, self.max_delay)

    async def drain(self) -> None:
        """Apply every pending record in order; raises StoreUnavailable where it has to stop."""
        touched_deployments = False
        while self.journal.entries:
            entry = self.journal.entries[0]
            record = self.journal.read(entry)
            try:
                write = self.writer(record)
            except ValueError as exc:
                self._drop("unreadable", record, str(exc))
                continue
            try:
                fresh = await self.store.apply_journaled(self.journal.id, record.seq, write)
            except StoreRefused as exc:
                self._drop("refused", record, str(exc))
                continue
            if fresh:
                self.applied += 1
            else:
                self.replayed += 1
            touched_deployments |= record.kind != "alertmanager"
            self.journal.forget_through(record.seq)
        if touched_deployments:
            await self.store.load_latest()

    def _drop(self, reason: str, record: Record, detail: str) -> None:
        self.dropped[reason] += 1
        log.error(
            "journal record dropped",
            extra={"seq": record.seq, "kind": record.kind, "reason": reason, "detail": detail},
        )
        self.journal.forget_through(record.seq)
