"""Writes the files generated from protocol/contracts.py: the health key tables of
docs/health.md and the dashboard's labels (frontend/src/contracts.generated.js).

    python scripts/gen_contracts.py          # rewrite them
    python scripts/gen_contracts.py --check  # exit 1, naming the stale files, if any

The dashboard bundle embeds the labels: after a change, rebuild it too
(bash scripts/build-frontend.sh).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a file: make the repository's packages importable
    sys.path.insert(0, str(ROOT))

from protocol import contracts  # noqa: E402 - needs the path set above

HEALTH_DOC = Path("docs/health.md")
DASHBOARD_JS = Path("frontend/src/contracts.generated.js")
COMMAND = "python scripts/gen_contracts.py"
BEGIN = f"<!-- generated from protocol/contracts.py by `{COMMAND}`: edit there, not here -->"
END = "<!-- end of generated health keys -->"


def _health_row(key: contracts.HealthKey) -> str:
    type_ = f"{key.type}/null" if key.nullable else key.type
    meaning = f"{key.meaning} (state key)" if key.state else key.meaning
    return f"| `{key.name}` | {type_} | {key.unit} | {meaning} |"


def render_health_tables() -> str:
    """The key tables of docs/health.md, one section per group."""
    parts = [BEGIN, ""]
    for title, keys in contracts.HEALTH_GROUPS:
        parts += [
            f"### {title}",
            "",
            "| key | type | unit | meaning |",
            "| --- | --- | --- | --- |",
        ]
        parts += [_health_row(k) for k in keys]
        parts.append("")
    parts.append(END)
    return "\n".join(parts)


def splice(doc: str, generated: str) -> str:
    """``doc`` with the text between the markers (included) replaced by ``generated``."""
    start, end = doc.find(BEGIN), doc.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{HEALTH_DOC}: markers of the generated key tables not found")
    return doc[:start] + generated + doc[end + len(END) :]


def _js_object(entries: dict[str, dict[str, str]]) -> str:
    """An object literal with one entry per line (JSON is valid JavaScript)."""
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in entries.items()]
    return "{\n" + "\n".join(lines) + "\n}"


def render_dashboard_js() -> str:
    events = {e.name: {"label": e.label, "lane": e.lane} for e in contracts.EVENT_TYPES}
    health = {
        k.name: {"label": k.title, "unit": k.unit, "type": k.type} for k in contracts.HEALTH_KEYS
    }
    return (
        f"// Generated from protocol/contracts.py by `{COMMAND}`: edit there, not here.\n"
        "// A health key name with <name> (a bus) or <reason> stands for any such name.\n"
        f"export const EVENT_TYPES = {_js_object(events)};\n\n"
        f"export const HEALTH_KEYS = {_js_object(health)};\n"
    )


def expected(root: Path) -> dict[Path, str]:
    """Each generated file's path under ``root`` and the text it must have."""
    doc = (root / HEALTH_DOC).read_text(encoding="utf-8")
    return {
        root / HEALTH_DOC: splice(doc, render_health_tables()),
        root / DASHBOARD_JS: render_dashboard_js(),
    }


def stale(root: Path) -> list[Path]:
    """The generated files whose text differs from what the contracts give."""
    out = []
    for path, text in expected(root).items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            out.append(path.relative_to(root))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    try:
        if args.check:
            old = stale(ROOT)
            for path in old:
                sys.stderr.write(
                    f"{path}: not generated from protocol/contracts.py; run: {COMMAND}\n"
                )
            return 1 if old else 0
        for path, text in expected(ROOT).items():
            path.write_text(text, encoding="utf-8")
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"gen_contracts: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
