"""Rewrite the golden vectors: ``python -m tests.protocol.make_golden``.

Only for a deliberate change of the encoding or of tests/protocol/samples.py; review the
diff, and bump the schema version if a consumer of the old bytes would now read them
differently.
"""

from __future__ import annotations

from tests.protocol.golden_files import GOLDEN_DIR, write_all

if __name__ == "__main__":
    write_all()
    print(f"wrote {GOLDEN_DIR}")
