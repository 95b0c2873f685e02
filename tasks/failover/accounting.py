"""Jepsen-like set accounting of the drill's writes (pure).

Every insert the writer tried is a `Write`: acknowledged (with the id the server returned),
failed (a definite error before anything was sent, or refused) or indeterminate (a timeout
or a connection lost after sending: it may or may not have committed). After the restore
the drill reads the drill table on every database; `classify` says, per acknowledged write,
whether it is present everywhere with the id that was acknowledged, lost (missing on the
node that takes writes after the restore, or on any node when that is unknown), not
replicated (missing only on another node: a fenced node waiting for `db.rejoin`, or
replication broken; the replication and checksum checks report it), or under another id,
and whether an acknowledged id was reused for another row.
`kine_check` compares the k3s datastore's revisions (kine's ids) between the nodes.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field


class WriteOutcome(enum.Enum):
    ACK = "acknowledged"
    FAIL = "failed"
    INDETERMINATE = "indeterminate"


@dataclass(frozen=True)
class Write:
    seq: int
    outcome: WriteOutcome
    id: int | None = None    # the AUTO_INCREMENT id the server acknowledged
    t: float = 0.0


Table = dict[int, int]  # a node's drill rows: id -> seq


@dataclass(frozen=True)
class SetResult:
    acknowledged: int
    present: int                                  # acked, on every node, under its id
    lost: dict[int, tuple[str, ...]]              # acked seq -> nodes missing it
    moved: dict[int, tuple[str, ...]]             # acked seq stored under another id
    reused: dict[int, tuple[str, ...]]            # acked id holding another seq there
    duplicate_ids: dict[int, tuple[int, ...]]     # one id acknowledged for several seqs
    indeterminate: int
    indeterminate_present: int                    # committed although not acknowledged
    failed_present: tuple[int, ...] = ()          # "failed" writes found anyway (a bug)
    unreplicated: int = 0                         # acked, on the writer, missing elsewhere

    @property
    def duplicates(self) -> int:
        return len(self.duplicate_ids) + len(self.reused) + len(self.moved)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicates or self.failed_present)


def _by_seq(table: Table) -> dict[int, int]:
    return {seq: i for i, seq in table.items()}


def classify(writes: list[Write], tables: dict[str, Table], writer: str | None = None
             ) -> SetResult:
    """Every acknowledged write checked on every node's table (see the module doc);
    `writer`: the node taking writes after the restore (None: unknown)."""
    seqs = {node: _by_seq(t) for node, t in tables.items()}
    lost: dict[int, tuple[str, ...]] = {}
    moved: dict[int, tuple[str, ...]] = {}
    reused: dict[int, tuple[str, ...]] = {}
    ids: dict[int, list[int]] = {}
    unreplicated = 0
    acked = [w for w in writes if w.outcome is WriteOutcome.ACK]
    for w in acked:
        if w.id is not None:
            ids.setdefault(w.id, []).append(w.seq)
        missing = tuple(n for n in tables if w.seq not in seqs[n])
        if missing and (writer is None or writer in missing):
            lost[w.seq] = missing
        elif missing:
            unreplicated += 1
        other_id = tuple(n for n in tables if seqs[n].get(w.seq, w.id) != w.id)
        if other_id:
            moved[w.seq] = other_id
        other_row = tuple(n for n in tables if tables[n].get(w.id or -1, w.seq) != w.seq)
        if other_row and w.id is not None:
            reused[w.id] = other_row
    anywhere = set().union(*[set(s) for s in seqs.values()]) if seqs else set()
    indet = [w for w in writes if w.outcome is WriteOutcome.INDETERMINATE]
    failed_present = tuple(w.seq for w in writes
                           if w.outcome is WriteOutcome.FAIL and w.seq in anywhere)
    return SetResult(
        acknowledged=len(acked),
        present=sum(1 for w in acked if all(w.seq in t for t in seqs.values())
                    and w.seq not in moved),
        lost=lost, moved=moved, reused=reused,
        duplicate_ids={i: tuple(s) for i, s in ids.items() if len(set(s)) > 1},
        indeterminate=len(indet),
        indeterminate_present=sum(1 for w in indet if w.seq in anywhere),
        failed_present=failed_present, unreplicated=unreplicated)


@dataclass(frozen=True)
class KineCheck:
    """kine's revisions (ids) compared between the nodes."""
    revisions: int                                   # ids on the node taking writes
    differing: tuple[int, ...] = ()                  # same id, different row: a reused revision
    missing_on: dict[str, tuple[int, ...]] = field(default_factory=dict)  # ids one node lacks
    gaps: int = 0                                    # missing ids inside the writer's range

    @property
    def clean(self) -> bool:
        return not self.differing and not any(self.missing_on.values())


def kine_check(rows: dict[str, dict[int, str]], writer: str) -> KineCheck:
    """rows: per node, kine id -> a digest of the row (name, prev_revision, value...).

    Gaps are counted, not judged: kine's compaction deletes old revisions and a failed
    insert burns an id; a differing row under one id is what a lost write turns into."""
    if not rows:
        return KineCheck(0)
    w = rows.get(writer) or next(iter(rows.values()))
    common = set.intersection(*[set(r) for r in rows.values()])
    union = set().union(*[set(r) for r in rows.values()])
    differing = tuple(sorted(i for i in common if len({r[i] for r in rows.values()}) > 1))
    missing_on = {n: tuple(sorted(union - set(r))) for n, r in rows.items() if union - set(r)}
    gaps = (max(w) - min(w) + 1 - len(w)) if w else 0
    return KineCheck(len(w), differing, missing_on, gaps)
