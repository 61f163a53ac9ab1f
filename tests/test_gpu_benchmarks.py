"""The prepared GPU runs of benchmarks/gpu/ run end to end on the CPU at a tiny size (``--smoke``): prepare the
bundle, run the device step here, report. Slow (real data files are read); each finishes in well under a minute.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "data")


@pytest.mark.slow
@pytest.mark.parametrize("script,data", [("xtransformer_eurlex.py", "eurlex57k"),
                                         ("masking_ave.py", "ave-myntra_fashion"),
                                         ("gudn_eurlex.py", "eurlex57k")])
def test_gpu_benchmark_smoke(script, data):
    if not os.path.isdir(os.path.join(DATA, data)):
        pytest.skip(f"../shared/data/{data} is not here")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"), OMP_WAIT_POLICY="PASSIVE")
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu", script), "smoke"], env=env,
                          capture_output=True, text=True, timeout=180)
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "smoke finished" in proc.stdout and "Smoke scale" in proc.stdout
    assert "held" in proc.stdout  # the claims are stated
    assert seconds < 90, f"{script} smoke took {seconds:.0f} s"


def _common(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks", "gpu"))
    import common
    return common


def test_device_wall_sums_the_runs_appended_into_one_log(monkeypatch):
    common = _common(monkeypatch)
    recs = [{"row": "a", "report": {}}, {"done": True, "seconds": 199.0}, {"row": "b", "skipped": "needs ~97 s"},
            {"done": True, "seconds": 170.9}, {"row": "b", "report": {}}, {"done": True, "seconds": 149.2}]
    assert common.device_wall(recs) == "519 s in 3 device runs"
    assert common.device_wall(recs[:2]) == "199 s"
    assert common.device_wall(recs[:1]).startswith("did not finish")


@pytest.mark.parametrize("value,ok", [("link,gudn", True), ("gudn", True), ("link,nope", False), (",", False)])
def test_rows_option_accepts_only_the_scripts_rows(value, ok, monkeypatch):
    import argparse
    common = _common(monkeypatch)
    p = argparse.ArgumentParser()
    common.add_rows_option(p, ("lightxml", "feature", "link", "gudn"), "gudn.jsonl")
    args = p.parse_args(["--rows", value])
    if ok:
        common.check_rows(p, args, ("lightxml", "feature", "link", "gudn"))
        assert args.rows == value.split(",")
    else:
        with pytest.raises(SystemExit):
            common.check_rows(p, args, ("lightxml", "feature", "link", "gudn"))
