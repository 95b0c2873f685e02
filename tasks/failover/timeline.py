"""Probe time series and what they measure (pure): samples, outages, dual ownership.

A probe records one `Sample` per attempt: (t, outcome, latency, detail), t in seconds on
the drill's monotonic clock. An outage is a stretch of samples that are not OK; its length
runs from the first failed sample to the next OK one (or the end of the series).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Outcome(enum.Enum):
    OK = "ok"
    FAIL = "fail"                  # a definite failure (refused, error before sending)
    INDETERMINATE = "indeterminate"  # timeout / connection lost after sending


@dataclass(frozen=True)
class Sample:
    t: float
    outcome: Outcome
    latency: float = 0.0
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


@dataclass
class Series:
    """One probe's samples, in time order."""
    name: str
    samples: list[Sample] = field(default_factory=list)

    def add(self, s: Sample) -> None:
        self.samples.append(s)


@dataclass(frozen=True)
class Gap:
    start: float
    end: float

    @property
    def length(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Outage:
    """What one probe saw after `since`: time to detect (None: never failed), the longest
    gap and the total time without success, in seconds."""
    detect_s: float | None
    longest_s: float
    total_s: float
    gaps: tuple[Gap, ...] = ()


def gaps(samples: list[Sample], since: float = float("-inf"), until: float = float("inf")
         ) -> list[Gap]:
    """Stretches without success among the samples in [since, until]: from the first
    non-OK sample to the next OK sample (or the last sample's time if none follows). A
    sample started before `since` and still running then (the request in flight when the
    fault hit, e.g. a write that ends indeterminate) counts from `since`."""
    out: list[Gap] = []
    start: float | None = None
    last_t = since
    for s in samples:
        if s.t + s.latency < since or s.t > until:
            continue
        last_t = max(s.t, since)
        if not s.ok and start is None:
            start = max(s.t, since)
        elif s.ok and start is not None:
            out.append(Gap(start, s.t))
            start = None
    if start is not None:
        out.append(Gap(start, max(last_t, start)))
    return out


def outage(samples: list[Sample], since: float, until: float = float("inf")) -> Outage:
    g = gaps(samples, since, until)
    if not g:
        return Outage(None, 0.0, 0.0)
    return Outage(round(g[0].start - since, 3), round(max(x.length for x in g), 3),
                  round(sum(x.length for x in g), 3), tuple(g))


def overlap_seconds(holds: dict[str, list[Sample]], since: float = float("-inf"),
                    until: float = float("inf")) -> float:
    """Seconds during which two or more members held the VIP at once.

    `holds`: per member, samples whose outcome is OK when it held the VIP (FAIL: did not,
    INDETERMINATE: could not be read, counted as not holding). Each sample's state lasts
    until that member's next sample.
    """
    edges: list[tuple[float, str, bool]] = []
    for name, samples in holds.items():
        edges += [(s.t, name, s.ok) for s in samples if since <= s.t <= until]
    edges.sort()
    state: dict[str, bool] = {}
    total, prev = 0.0, None
    for t, name, held in edges:
        if prev is not None and sum(state.values()) >= 2:
            total += t - prev
        state[name] = held
        prev = t
    return round(total, 3)


def first_ok_after(samples: list[Sample], since: float) -> float | None:
    """The time of the first OK sample after which every sample is OK (healthy for good)."""
    good: float | None = None
    for s in samples:
        if s.t < since:
            continue
        if s.ok and good is None:
            good = s.t
        elif not s.ok:
            good = None
    return good
