"""The benchmark suite runs one small case end to end and writes its report (no timing is
asserted: the numbers depend on the machine)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import report, run  # noqa: E402


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="peak memory needs Linux /proc")
def test_one_case_writes_the_report(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    status = run.main([
        "--cases", "cross_scale_embed/raftmlp_s_level_2/forward+backward",
        "--implementations", "reference", "mlpmix", "--threads", "1",
        "--min-run-time", "0.01", "--out", str(tmp_path), "--name", "smoke",
    ])
    assert status == 0
    markdown = (tmp_path / "smoke.md").read_text()
    assert "| " + " | ".join(report.COLUMNS) + " |" in markdown
    assert "torch" in markdown and "cores" in markdown and "threads" in markdown
    rows = json.loads((tmp_path / "smoke.json").read_text())["rows"]
    assert [r["implementation"] for r in rows] == ["reference", "mlpmix"]
    assert all(set(report.COLUMNS) == set(r) for r in rows)
    assert rows[0]["speedup vs eager reference"] == 1.0
    assert all(r["peak memory MiB"] is not None for r in rows)
    assert (tmp_path / "smoke.png").read_bytes().startswith(b"\x89PNG")
