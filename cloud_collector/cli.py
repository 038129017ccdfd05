"""``cloud-collector`` command line."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    del argv
    print("cloud-collector: the collector service is not part of this release yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
