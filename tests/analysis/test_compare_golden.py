"""The comparison record and its table, held against reviewed golden files.

A change of the model, the cost model or the renderer shows up here as a diff to review.
Regenerate after review:
``SHEAFTUNE_REGEN=1 .venv/bin/pytest tests/analysis/test_compare_golden.py``.
"""

from __future__ import annotations

import io
import json
import os

from sheaftune.analysis.compare import compare_synthetic, parse_used
from sheaftune.report import render, to_json
from tests.conftest import DATA

GOLDEN = DATA / "golden"


def check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("SHEAFTUNE_REGEN"):
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run with SHEAFTUNE_REGEN=1 and review it"
    assert text == path.read_text(), f"{name} changed: review, then regenerate"


def test_comparison_golden():
    c = compare_synthetic(12, parse_used("uniform:1-4"), cpus=2, ops_total=300)
    check("comparison-u12.json", to_json(c))
    out = io.StringIO()
    render(c, "table", out)
    check("comparison-u12.txt", out.getvalue())
    d = json.loads((GOLDEN / "comparison-u12.json").read_text())
    assert d["schema"] == "sheaftune/comparison"
