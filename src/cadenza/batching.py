"""Continuous batching of decoders: many sequences, one model step for all of them.

A *job* is a generator that runs one or more ``Decoder``s (``cadenza.sampling``) of single
sequences and, whenever a decoder needs the model to read a token before it can choose the
next one, yields that decoder (``yield from need_reads(dec)``); whatever it returns is its
result. ``drive(model, job)`` runs one job alone; ``Batch`` runs many: each ``step()``
advances every job to its next read, then one ``decode_rows`` call reads one token for each
of them (each row its own sparse KV cache, its own position, its own grammar and generator,
all of which live in the decoder). Jobs join with ``add`` and leave when they finish, between
steps. A token the grammar forces is taken without sampling, so its row needs no logits: it
only rides along in the next step's read (its keys must be cached).

Why a job's tokens do not depend on the batch: the fused step computes every row as a batch
of one would (``decode_step.decode_rows``), sampling draws from the row's own generator, and
``drive`` reads through the same function. A job's music is therefore the same, token for
token, alone or batched with any others (tests/test_batching.py).

``Batch.step(rows)`` serves at most ``rows`` jobs, the most urgent first (the smallest
``Job.deadline``); the others wait for a later step. With ``urgent``, a step serves only
the jobs due before it while any is, so a job about to be late gets quick small steps.
"""

from __future__ import annotations

import itertools
from operator import attrgetter
from dataclasses import dataclass, field
from typing import Any, Generator

from cadenza.decode_step import decode_rows

Job = Generator  # yields Decoders that need a read, returns the job's result


def need_reads(dec) -> Generator:
    """Yield ``dec`` while the model has tokens of it to read (use as ``yield from``)."""
    while dec.unread() is not None:
        yield dec


def reader(model):
    """A ``Decoder.reader`` that reads through ``decode_rows`` (a lone decoder then computes
    exactly what it would in a batch)."""
    return lambda tokens, caches: decode_rows(model, tokens, caches)


def drive(model, job: Job) -> Any:
    """Run ``job`` alone to its end and return its result."""
    try:
        dec = next(job)
        while True:
            dec.read(decode_rows(model, [dec.unread()], [dec.cache])[0])
            dec = job.send(None)
    except StopIteration as stop:
        return stop.value


_order = itertools.count()
_urgency = attrgetter("deadline", "seq")


@dataclass(order=True)
class Entry:
    """A job in a ``Batch``: ``deadline`` orders service (smaller first), ties by arrival."""

    deadline: float
    seq: int = field(default_factory=lambda: next(_order))
    job: Job = field(default=None, compare=False)
    dec: Any = field(default=None, compare=False)          # the decoder waiting for a read
    done: bool = field(default=False, compare=False)
    result: Any = field(default=None, compare=False)
    error: BaseException | None = field(default=None, compare=False)
    tag: Any = field(default=None, compare=False)
    reads: int = field(default=0, compare=False)          # the model steps it has taken a row of


class Batch:
    """Jobs advanced together (see the module docstring). Not thread-safe: one thread steps it."""

    def __init__(self, model):
        self.model = model
        self.entries: list[Entry] = []
        self.steps = 0
        self.rows_read = 0

    def add(self, job: Job, deadline: float = 0.0, tag=None) -> Entry:
        e = Entry(deadline, job=job, tag=tag)
        self.entries.append(e)
        return e

    def drop(self, entry: Entry) -> None:
        """Stop a job (it is closed; its decoder keeps the state it had)."""
        if entry in self.entries:
            self.entries.remove(entry)
            entry.job.close()

    def __len__(self) -> int:
        return len(self.entries)

    def _advance(self, e: Entry) -> None:
        try:
            e.dec = next(e.job) if e.dec is None else e.job.send(None)
        except StopIteration as stop:
            e.done, e.result, e.dec = True, stop.value, None
        except Exception as exc:   # noqa: BLE001 - the job's own failure is its result
            e.done, e.error, e.dec = True, exc, None

    def step(self, rows: int | None = None, urgent: float | None = None) -> list[Entry]:
        """Advance the ``rows`` most urgent jobs by one read each (only those due before
        ``urgent`` while any is: small, quick steps for them); returns the jobs that ended
        (removed from the batch), with ``result`` or ``error``."""
        self.entries.sort(key=_urgency)
        chosen = self.entries if rows is None else self.entries[:rows]
        if urgent is not None and chosen and chosen[0].deadline < urgent:
            chosen = [e for e in chosen if e.deadline < urgent]
        ended, reading = [], []
        for e in chosen:
            if e.dec is None:          # new, or read last step: on to its next read (or its end)
                self._advance(e)
            if e.done:
                ended.append(e)
            else:
                reading.append(e)
        if reading:
            logits = decode_rows(self.model, [e.dec.unread() for e in reading], [e.dec.cache for e in reading])
            for i, e in enumerate(reading):
                e.reads += 1
                e.dec.read(logits[i])
                self._advance(e)
                if e.done:
                    ended.append(e)
            self.steps += 1
            self.rows_read += len(reading)
        if ended:
            gone = {id(e) for e in ended}
            self.entries = [e for e in self.entries if id(e) not in gone]
        return ended


__all__ = ["Batch", "Entry", "drive", "need_reads", "reader"]
