"""The system probe: what the kernel says about this process and the outbox's disk.

The only place health figures come from files and system calls; every value that cannot
be read is None, so a probe never fails a snapshot.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from edge_agent.health import ProbeValues
from edge_agent.outbox import filesystem_free_bytes


def _page_size() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4096


_PAGE_SIZE = _page_size()


def rss_bytes(statm: Path = Path("/proc/self/statm")) -> int | None:
    """Resident set size from /proc (Linux); None elsewhere."""
    try:
        pages = int(statm.read_text(encoding="ascii").split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * _PAGE_SIZE


class SystemProbe:
    """Reads CPU time, RSS and the free space next to ``outbox_path``."""

    def __init__(self, outbox_path: Path) -> None:
        self.outbox_path = outbox_path

    def read(self) -> ProbeValues:
        return ProbeValues(
            cpu_s=time.process_time(),
            rss_bytes=rss_bytes(),
            disk_free_bytes=filesystem_free_bytes(self.outbox_path),
        )
