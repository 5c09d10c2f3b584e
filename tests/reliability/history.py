"""The history checker: every call's outcome against what Redis stored and what a subscriber saw."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from huddle import Checkpoint, Event


@dataclass
class CallRecord:
    """One logical call (all its attempts share one idempotency key) and how it ended."""

    writer: str
    key: str
    attempts: int
    seq: int | None
    """The seq acknowledged to the writer, or None if every attempt failed."""
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (workers write these as JSON lines)."""
        return asdict(self)


@dataclass
class HistoryReport:
    """Counts of one run and the problems the checker found (empty = the run kept every promise)."""

    calls: int = 0
    acknowledged: int = 0
    retried: int = 0
    errored: int = 0
    errored_but_stored: int = 0
    lost: int = 0
    doubled: int = 0
    stored_events: int = 0
    subscriber_events: int = 0
    subscriber_rolled_back: int = 0
    """Events the subscriber delivered and was then told (``EventsRolledBackError``) a failover replaced; it
    resubscribed from the first of them, so what it kept must still equal the log (set by the workload)."""
    subscriber_missed: int = 0
    """Stored events the subscriber's kept list lacks (under their seq with their contents)."""
    checkpoints_checked: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        """Record a violation (kept short: the first few are enough to debug)."""
        if len(self.problems) < 20:
            self.problems.append(message)


def replay_state(events: list[Event], initial_state: str) -> dict[int, tuple[str, frozenset[str]]]:
    """Session state and member set after each stored seq, recomputed from the log alone."""
    state, members = initial_state, set()
    after: dict[int, tuple[str, frozenset[str]]] = {}
    for event in events:
        if event.type in ("start", "join"):
            members.add(event.actor)
        elif event.type == "leave":
            members.discard(event.actor)
        if event.state_transition is not None:
            state = event.state_transition.to
        after[event.seq] = (state, frozenset(members))
    return after


def check_history(
    records: list[CallRecord],
    events: list[Event],
    *,
    last_seq: int,
    subscriber: list[Event] | None = None,
    checkpoints: list[Checkpoint] | None = None,
    initial_state: str = "initialized",
    allow_loss: bool = False,
) -> HistoryReport:
    """Check a finished run: acknowledged events stored exactly once under their seq, errored calls at most
    once, a gapless log, a subscriber that saw the log once and in order, checkpoints that agree with the log.

    ``allow_loss``: count acknowledged-but-missing events (``lost``) without calling them a problem (the
    ``everysec`` crash window); doubled events and gaps are problems in every mode."""
    report = HistoryReport(calls=len(records), stored_events=len(events))
    seqs = [event.seq for event in events]
    if seqs != list(range(1, len(seqs) + 1)):
        missing = sorted(set(range(1, max(seqs, default=0) + 1)) - set(seqs))
        report.fail(f"log is not gapless 1..n: missing {missing[:10]}, length {len(seqs)}")
    if seqs and seqs[-1] != last_seq:
        report.fail(f"meta seq {last_seq} != last stored seq {seqs[-1]}")

    stored_under: dict[str, list[int]] = {}
    for event in events:
        key = (event.data or {}).get("key")
        if isinstance(key, str):
            stored_under.setdefault(key, []).append(event.seq)
    keys = Counter(record.key for record in records)
    for key, count in keys.items():
        if count > 1:
            report.fail(f"history holds key {key!r} {count} times (harness bug)")

    for record in records:
        stored = stored_under.get(record.key, [])
        if record.attempts > 1:
            report.retried += 1
        if len(stored) > 1:
            report.doubled += len(stored) - 1
            report.fail(f"{record.key} stored {len(stored)} times at {stored} (attempts {record.attempts})")
        if record.seq is not None:
            report.acknowledged += 1
            if not stored:
                report.lost += 1
                if not allow_loss:
                    report.fail(f"{record.key} acknowledged as seq {record.seq} but not stored")
            elif stored[0] != record.seq:
                report.fail(f"{record.key} acknowledged as seq {record.seq} but stored at {stored}")
        else:
            report.errored += 1
            report.errored_but_stored += 1 if stored else 0
    unknown = set(stored_under) - set(keys)
    if unknown:
        report.fail(f"{len(unknown)} stored keys no call made, e.g. {sorted(unknown)[:3]}")

    if subscriber is not None:
        _check_subscriber(report, subscriber, events)

    if checkpoints is not None:
        after = replay_state(events, initial_state)
        by_seq = {event.seq: event for event in events}
        for checkpoint in checkpoints:
            report.checkpoints_checked += 1
            marker = by_seq.get(checkpoint.seq)
            if marker is None or marker.type != "checkpoint":
                report.fail(f"{checkpoint.checkpoint_id} has no checkpoint event at its seq")
                continue
            state, members = after[checkpoint.seq]
            if checkpoint.state != state:
                report.fail(f"{checkpoint.checkpoint_id} state {checkpoint.state!r}, log says {state!r}")
            if frozenset(checkpoint.agents) != members:
                report.fail(
                    f"{checkpoint.checkpoint_id} agents {sorted(checkpoint.agents)}, log {sorted(members)}"
                )
    return report


def _check_subscriber(report: HistoryReport, subscriber: list[Event], events: list[Event]) -> None:
    report.subscriber_events = len(subscriber)
    seen = [event.seq for event in subscriber]
    seqs = [event.seq for event in events]
    delivered = {(event.seq, event.type, event.actor, repr(event.data)) for event in subscriber}
    stored = {(event.seq, event.type, event.actor, repr(event.data)) for event in events}
    report.subscriber_missed = len(stored - delivered)
    if seen != seqs:
        first = next(
            (i for i, (a, b) in enumerate(zip(seen, seqs, strict=False)) if a != b), min(len(seen), len(seqs))
        )
        report.fail(
            f"subscriber saw {len(seen)} events, log holds {len(seqs)}; first difference at index {first}"
        )
    by_seq = {event.seq: event for event in events}
    for event in subscriber:
        stored_event = by_seq.get(event.seq)
        if stored_event is not None and stored_event != event:
            report.fail(f"subscriber's seq {event.seq} differs from the stored event")
            break
