"""Which ``(epoch, seq)`` a stored batch carries: pure arithmetic over the outbox's epoch
table, no I/O.

The outbox keys its batches by a file-wide local number that keeps counting across
epochs, so starting a new epoch rewrites no batch. ``epochs`` lists ``(first local
number, epoch)`` per epoch still holding batches, oldest first; the last one is the
current epoch, whose batches run up to ``next_seq`` (its next wire seq, not yet issued).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

Epochs = Sequence[tuple[int, int]]


def wire_id(epochs: Epochs, local: int) -> tuple[int, int]:
    """(epoch, wire seq) of the batch stored under local number ``local``."""
    i = max(bisect_right([first for first, _ in epochs], local) - 1, 0)
    first, epoch = epochs[i]
    return epoch, local - first + 1


def local_span(epochs: Epochs, next_seq: int, epoch: int) -> tuple[int, int] | None:
    """Local numbers ``[first, end)`` of ``epoch``, or None if no batch of it is held."""
    for i, (first, known) in enumerate(epochs):
        if known == epoch:
            last = i + 1 == len(epochs)
            end = first + next_seq - 1 if last else epochs[i + 1][0]
            return first, end
    return None


def local_number(epochs: Epochs, next_seq: int, epoch: int, seq: int) -> int | None:
    """The local number of ``(epoch, seq)``, or None if this outbox never issued it."""
    span = local_span(epochs, next_seq, epoch)
    if span is None or seq < 1 or span[0] + seq - 1 >= span[1]:
        return None
    return span[0] + seq - 1
