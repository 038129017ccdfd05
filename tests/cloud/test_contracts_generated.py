"""docs/health.md's key tables and the dashboard's labels are generated from
protocol/contracts.py; the committed files must be what the generator writes now."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from protocol import contracts

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "cloud_collector" / "dashboard" / "static" / "main.js"


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_contracts", ROOT / "scripts" / "gen_contracts.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_files_are_current(gen: ModuleType) -> None:
    old = gen.stale(ROOT)
    assert old == [], f"{', '.join(map(str, old))} out of date: run {gen.COMMAND}"


def test_every_health_key_is_in_the_doc_and_the_dashboard_labels(gen: ModuleType) -> None:
    doc = (ROOT / gen.HEALTH_DOC).read_text(encoding="utf-8")
    js = (ROOT / gen.DASHBOARD_JS).read_text(encoding="utf-8")
    for key in contracts.HEALTH_KEYS:
        assert f"| `{key.name}` |" in doc, key.name
        assert f'"{key.name}": {{"label": "{key.title}"' in js, key.name
    for event in contracts.EVENT_TYPES:
        assert f'"{event.name}": {{"label": "{event.label}", "lane": "{event.lane}"}}' in js


def test_the_state_keys_the_reason_table_lists_are_the_contracts(gen: ModuleType) -> None:
    doc = (ROOT / gen.HEALTH_DOC).read_text(encoding="utf-8")
    row = next(line for line in doc.splitlines() if line.startswith("| `change:<keys>`"))
    assert set(re.findall(r"`([a-z_<>]+)`", row.split("|")[2])) == set(contracts.STATE_KEYS)


def test_the_committed_dashboard_bundle_carries_the_labels() -> None:
    bundle = BUNDLE.read_text(encoding="utf-8")
    missing = [e.label for e in contracts.EVENT_TYPES if e.label not in bundle]
    missing += [k.title for k in contracts.HEALTH_KEYS if k.title not in bundle]
    assert missing == [], "rebuild the dashboard: bash scripts/build-frontend.sh"


def test_a_changed_contract_makes_the_files_stale_and_check_names_them(
    gen: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for rel in (gen.HEALTH_DOC, gen.DASHBOARD_JS):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    assert gen.stale(tmp_path) == []
    title, keys = contracts.HEALTH_GROUPS[0]
    renamed = (dataclasses.replace(keys[0], name="snapshot_reason"), *keys[1:])
    monkeypatch.setattr(
        contracts, "HEALTH_GROUPS", ((title, renamed), *contracts.HEALTH_GROUPS[1:])
    )
    monkeypatch.setattr(contracts, "HEALTH_KEYS", (*renamed, *contracts.HEALTH_KEYS[len(keys) :]))
    assert gen.stale(tmp_path) == [gen.HEALTH_DOC, gen.DASHBOARD_JS]
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    assert gen.main(["--check"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{p}: not generated from protocol/contracts.py; run: python scripts/gen_contracts.py"
        for p in (gen.HEALTH_DOC, gen.DASHBOARD_JS)
    ]
    assert gen.main([]) == 0
    assert gen.stale(tmp_path) == []
    assert "| `snapshot_reason` |" in (tmp_path / gen.HEALTH_DOC).read_text(encoding="utf-8")


def test_a_doc_without_its_markers_is_one_line_not_a_traceback(
    gen: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / gen.HEALTH_DOC).write_text("# Agent health\n\nno tables\n", encoding="utf-8")
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    assert gen.main([]) == 1
    assert capsys.readouterr().err == (
        "gen_contracts: docs/health.md: markers of the generated key tables not found\n"
    )
    assert not (tmp_path / gen.DASHBOARD_JS).exists()


def test_the_generator_runs_as_a_script_from_anywhere(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_contracts.py"), "--check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
