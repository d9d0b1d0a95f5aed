"""Every bench script at least imports: they run by hand, not in CI, so a broken import
(a name that exists only in a .pyi, say) would otherwise go unnoticed."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py")))
def test_bench_script_imports(script: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))    # the scripts import their sibling common.py
    # Run the module body without __main__, so main() does not start a lab.
    runpy.run_path(str(BENCH / script), run_name="bench_import_check")
