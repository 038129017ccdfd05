"""Eviction notices: how an agent tells the collector that closed batches are gone.

An agent that evicts closed batches (its storage is full) or finds one damaged sends, in a
later batch, one event of type ``EVICTION_NOTICE`` per run of consecutive seqs of one
epoch, naming the run and how many records it held. The collector counts those seqs as
received, so its acknowledgement passes them; without the notice a missing seq holds the
acks back (PROTOCOL.md section 6, gaps): it may still be on its way.
"""

from __future__ import annotations

from typing import Final

from protocol.limits import UINT64_MAX
from protocol.records import Event

EVICTION_NOTICE: Final = "outbox_evicted"
# Longest run one notice may name; a producer splits longer runs. Bounds the collector's
# work per notice.
MAX_NOTICE_SEQS: Final = 10_000

# ``attrs`` keys of a notice.
NOTICE_EPOCH: Final = "epoch"  # decimal text: a uint64 need not fit a signed integer
NOTICE_FIRST_SEQ: Final = "first_seq"
NOTICE_LAST_SEQ: Final = "last_seq"
NOTICE_RECORDS: Final = "records"  # records the lost batches held
NOTICE_CAUSE: Final = "cause"  # why they were lost, e.g. evicted_bulk, dropped_corrupt


def eviction_notice(
    *, epoch: int, first_seq: int, last_seq: int, time_ms: int, records: int, cause: str
) -> Event:
    """The event telling that seqs ``first_seq`` .. ``last_seq`` of ``epoch``, whose latest
    record was at ``time_ms``, are lost."""
    return Event(
        type=EVICTION_NOTICE,
        time_ms=time_ms,
        speed_kmh=None,
        fix=None,
        source=None,
        attrs={
            NOTICE_EPOCH: str(epoch),
            NOTICE_FIRST_SEQ: first_seq,
            NOTICE_LAST_SEQ: last_seq,
            NOTICE_RECORDS: records,
            NOTICE_CAUSE: cause,
        },
    )


def noticed_seqs(event: Event) -> tuple[int, int, int] | None:
    """``(epoch, first_seq, last_seq)`` of an eviction notice, or None when ``event`` is
    not one or its attributes are out of range (a consumer then ignores it)."""
    if event.type != EVICTION_NOTICE:
        return None
    attrs = event.attrs
    epoch, first, last = (attrs.get(k) for k in (NOTICE_EPOCH, NOTICE_FIRST_SEQ, NOTICE_LAST_SEQ))
    if not (isinstance(epoch, str) and epoch.isascii() and epoch.isdigit() and len(epoch) <= 20):
        return None
    if type(first) is not int or type(last) is not int:
        return None
    if not (1 <= first <= last < first + MAX_NOTICE_SEQS) or int(epoch) > UINT64_MAX:
        return None
    return int(epoch), first, last
