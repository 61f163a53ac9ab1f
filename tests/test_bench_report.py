"""The benchmark scripts' reports: rewriting BENCHMARKS.md from the results at hand never drops the
tables that were not rerun (their JSON may live on another machine or be lost): bench_scale.py's sizes,
and the ``### `` tables of bench_xr_linear.py and bench_tradeoff.py (markdown_section.py)."""

from __future__ import annotations

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import bench_scale  # noqa: E402

PREVIOUS = """Intro paragraph.

Machine: old box, shared with other engineers' jobs (timings are one run each and carry that noise).

Goals (issue 23): whatever.

### 10,000 labels

ten thousand: kept verbatim | 1 | 2 |

### 3,000,000 labels

three million: the old row

### Distributed training (2-worker local cluster)

distributed: kept verbatim

### Notes

an old reading"""


def _result(labels: int) -> dict:
    row = {"method": "xmc", "P@1": 0.875, "P@3": 0.4, "P@5": 0.25, "PSP@5": 0.3, "train_s": 10.0, "predict_s": 1.0,
           "predict_ms_per_doc": 0.1, "peak_rss_mb": 100.0, "model_bytes": 2**20}
    return {"labels": labels, "train_docs": 5, "test_docs": 2, "features": 7, "seed": 0, "idf": True,
            "generate_s": 1.0, "train_nnz_per_doc": 3.0, "labels_per_doc": 1.5, "labels_seen_in_train": 4,
            "labels_le5_docs": 0.5, "date": "2026-12-03", "machine": "new box", "command": "cmd", "rows": [row]}


def test_previous_subsections_are_keyed_by_size_distributed_and_notes():
    parts = bench_scale.previous_subsections(PREVIOUS)
    assert sorted(parts, key=str) == [10_000, 3_000_000, "distributed", "notes"]
    assert parts[10_000] == "### 10,000 labels\n\nten thousand: kept verbatim | 1 | 2 |"
    assert parts["notes"] == "### Notes\n\nan old reading"


def test_rerunning_one_size_keeps_the_others(tmp_path):
    with open(tmp_path / "labels_003000000.json", "w") as f:
        json.dump(_result(3_000_000), f)
    body = bench_scale.render_section(str(tmp_path), "", PREVIOUS)
    assert "ten thousand: kept verbatim | 1 | 2 |" in body  # a size without a result stays
    assert "three million: the old row" not in body  # the rerun size is replaced ...
    assert "| xmc | 87.50 | 40.00 | 25.00 | 30.00 | 10.0 |" in body  # ... by its new table
    assert body.index("### 10,000 labels") < body.index("### 3,000,000 labels") < body.index("### Distributed")
    assert "distributed: kept verbatim" in body and body.endswith("### Notes\n\nan old reading")
    assert "Machine: new box / old box," in body  # the kept tables' machine is still named


def test_a_result_from_before_psp_shows_a_dash_not_a_number():
    result = _result(1_000_000)
    del result["rows"][0]["PSP@5"], result["rows"][0]["P@3"]
    lines = bench_scale.size_table(result)
    row = next(line for line in lines if line.startswith("| xmc "))
    assert row.startswith("| xmc | 87.50 | - | 25.00 | - | 10.0 |")
    assert row.count("|") == next(line for line in lines if line.startswith("| method ")).count("|")


def test_new_notes_replace_the_old_and_no_previous_means_results_only(tmp_path):
    with open(tmp_path / "labels_003000000.json", "w") as f:
        json.dump(_result(3_000_000), f)
    body = bench_scale.render_section(str(tmp_path), "a new reading", PREVIOUS)
    assert body.endswith("### Notes\n\na new reading") and "an old reading" not in body
    fresh = bench_scale.render_section(str(tmp_path), "", None)
    assert "### 10,000 labels" not in fresh and "Not measured yet" in fresh
    assert "Machine: new box," in fresh


# The generic form used by bench_xr_linear.py and bench_tradeoff.py (benchmarks/markdown_section.py).
import markdown_section  # noqa: E402


def test_subsections_split_on_level_three_headings_only():
    body = "preamble\n\n### a\n\nrow a\n#### not a split\n\n### b (tag)\nrow b\n"
    assert markdown_section.subsections(body) == {"### a": "### a\n\nrow a\n#### not a split",
                                                  "### b (tag)": "### b (tag)\nrow b"}
    assert markdown_section.subsections(None) == {}


def test_rebuilding_from_some_results_keeps_the_other_tables():
    previous = "old preamble\n\n### bibtex\n\nold bibtex row\n\n### eurlex57k\n\neurlex row, no JSON any more"
    rebuilt = "new preamble\n\n### bibtex\n\nnew bibtex row"
    body = markdown_section.keep_missing_subsections(rebuilt, previous)
    assert body == "new preamble\n\n### bibtex\n\nnew bibtex row\n\n### eurlex57k\n\neurlex row, no JSON any more"
    assert markdown_section.keep_missing_subsections(rebuilt, rebuilt) == rebuilt
    assert markdown_section.keep_missing_subsections(rebuilt, None) == rebuilt


def test_rerunning_xmc_keeps_an_earlier_unfinished_peer(tmp_path):
    earlier = _result(3_000_000)
    earlier["rows"].append({"method": "pecos", "error": "not finished after 109 min"})
    path = tmp_path / "labels_003000000.json"
    with open(path, "w") as f:
        json.dump(earlier, f)
    rerun = {**_result(3_000_000), "date": "2026-12-04", "command": "cmd --methods xmc"}
    kept = bench_scale._earlier_rows(str(path), rerun, ["xmc"])
    assert kept == [{"method": "pecos", "error": "not finished after 109 min", "from_run": "2026-12-03, `cmd`"}]
    table = "\n".join(bench_scale.size_table({**rerun, "rows": rerun["rows"] + kept}))
    assert "| pecos (earlier run *) | error: not finished after 109 min |" in table
    assert "\\* pecos's row is kept from an earlier run on the same matrices (2026-12-03, `cmd`)." in table
    assert bench_scale._earlier_rows(str(path), {**rerun, "seed": 1}, ["xmc"]) == []  # other data: nothing kept


def test_a_failed_rerun_keeps_the_earlier_finished_row(tmp_path):
    earlier = _result(10_000_000)
    path = tmp_path / "labels_010000000.json"
    with open(path, "w") as f:
        json.dump(earlier, f)
    finished = next(r for r in earlier["rows"] if r["method"] == "xmc")
    rerun = {**_result(10_000_000), "date": "2026-12-04", "command": "cmd --methods xmc",
             "rows": [{"method": "xmc", "error": "timeout after 7200.0 s"}]}
    bench_scale._keep_finished(str(path), rerun)
    assert rerun["rows"] == [{**finished, "from_run": "2026-12-03, `cmd`",
                              "rerun_error": "timeout after 7200.0 s (2026-12-04, `cmd --methods xmc`)"}]
    table = "\n".join(bench_scale.size_table(rerun))
    assert "| xmc (earlier run *) |" in table and "A rerun failed: timeout after 7200.0 s (2026-12-04" in table
    other = {**_result(10_000_000), "seed": 1, "rows": [{"method": "xmc", "error": "timeout"}]}
    bench_scale._keep_finished(str(path), other)  # other data: the failure stands
    assert other["rows"] == [{"method": "xmc", "error": "timeout"}]


import bench_tradeoff  # noqa: E402


def _sweep(p1: float, ms: float, size: int) -> dict:
    point = {"threshold": 0.1, "beam": 10, "P@1": p1, "P@3": 0.5, "P@5": 0.3, "PSP@5": 0.4,
             "ms_per_1k": ms, "predict_s": ms / 1000, "model_bytes": size}
    return {"train_s": ms, "points": [point]}


def test_tradeoff_points_average_accuracy_over_label_tree_seeds():
    curve = bench_tradeoff.over_seeds([_sweep(0.90, 10.0, 100), _sweep(0.92, 30.0, 300), _sweep(0.94, 20.0, 200)],
                                      [0, 1, 2])
    (point,) = curve["points"]
    assert abs(point["P@1"] - 0.92) < 1e-12  # the mean over the three trees
    assert point["ms_per_1k"] == 20.0 and point["model_bytes"] == 200.0 and curve["train_s"] == 20.0
    assert point["per_seed"]["1"]["P@1"] == 0.92  # each tree's own figures are kept
    result = {"dataset": "d", "train_docs": 1, "test_docs": 1, "labels": 1, "date": "x", "load_before": 0.0,
              "load_after": 0.0, "command": "c", "seeds": [0, 1, 2],
              "methods": {"xmc": curve, "pecos": bench_tradeoff.over_seeds([_sweep(0.91, 25.0, 150)] * 3, [0, 1, 2])}}
    text = "\n".join(bench_tradeoff.dataset_table(result))
    assert "P@1 spread between seeds (max - min, mean over a series' points): xmc 4.00, pecos 0.00." in text
    assert "| pecos | 0.1 | 10 | 91.00 | 50.00 | 30.00 | 40.00 | 25 | 0.0 | yes: xmc 0.1 / beam 10 | **no** |" in text
    # 1 label: xmc's default threshold is 0.05, absent from this sweep, so no defaults line
    assert "Defaults" not in text
    for run in curve, result["methods"]["pecos"]:
        run["points"].append({**run["points"][0], "threshold": 0.05})
    text = "\n".join(bench_tradeoff.dataset_table(result))
    assert ("Defaults (xmc: threshold 0.05, beam 10; PECOS: 0.1, beam 10), xmc minus PECOS: P@1 +1.00, P@3 +0.00, "
            "P@5 +0.00, PSP@5 +0.00; prediction time 0.80x, model 1.33x.") in text


import bench_xr_linear  # noqa: E402
import peers  # noqa: E402


def test_batch_predict_time_is_the_median_of_the_timed_calls(monkeypatch):
    clock = iter([0.0, 5.0, 10.0, 11.0, 20.0, 23.0])  # three calls of 5, 1 and 3 seconds
    monkeypatch.setattr(peers.time, "perf_counter", lambda: next(clock))
    calls = []
    assert peers.median_call_seconds(lambda: calls.append(1), 3) == 3.0
    assert len(calls) == 3
    row = {"method": "pecos", "P@1": 0.9, "P@3": 0.8, "P@5": 0.7, "PSP@5": 0.6, "train_s": 1.0,
           "predict_ms_per_1k": 2.0, "latency_ms_p50": 1.0, "latency_ms_p90": 2.0, "peak_rss_mb": 3.0,
           "model_bytes": 2**20}
    result = {"dataset": "d", "shape": {"train": 1, "test": 1, "labels": 1}, "date": "x", "repeats": 1,
              "command": "c", "rows": [{**row, "predict_calls": 5}]}
    assert "Batch predict: median of 5 calls per run, after an untimed one." in "\n".join(
        bench_xr_linear.dataset_table(result))
    result["rows"] = [row]  # a result from before the calls were counted: one call, no claim
    assert "Batch predict" not in "\n".join(bench_xr_linear.dataset_table(result))


def test_import_plus_first_fit_columns_add_the_import_and_keep_old_results_readable():
    row = {"P@1": 0.9, "P@3": 0.8, "P@5": 0.7, "PSP@5": 0.6, "predict_ms_per_1k": 2.0, "latency_ms_p50": 1.0,
           "latency_ms_p90": 2.0, "peak_rss_mb": 3.0, "model_bytes": 2**20}
    rows = [{**row, "method": "xmc", "train_s": 0.6, "train_warm_s": 0.3, "import_s": 0.4},
            {**row, "method": "pecos", "train_s": 0.5, "train_warm_s": 0.35, "import_s": 1.5}]
    result = {"dataset": "d", "shape": {"train": 1, "test": 1, "labels": 1}, "date": "x", "repeats": 1,
              "command": "c", "rows": rows}
    lines = bench_xr_linear.dataset_table(result)
    header = next(line for line in lines if line.startswith("| method"))
    assert header.endswith("| 2nd fit (s) | 2nd fit / PECOS | import + fit (s) | import + fit / PECOS |")
    xmc = next(line for line in lines if line.startswith("| xmc"))
    assert xmc.endswith("| 0.30 | 0.86 | 1.00 | 0.50 |")  # (0.4 + 0.6) / (1.5 + 0.5)
    for r in rows:  # results written before the import was timed: the second-fit columns only
        del r["import_s"]
    header = next(line for line in bench_xr_linear.dataset_table(result) if line.startswith("| method"))
    assert header.endswith("| 2nd fit / PECOS |")


import bench_predict  # noqa: E402


def test_predict_table_gives_medians_rounds_and_ratios_to_pecos():
    def row(method, ms, rss):
        return {"method": method, "P@1": 0.9, "P@5": 0.7, "PSP@5": 0.6, "ms_per_1k": ms, "first_call_ms_per_1k": 2 * ms,
                "load_s": 0.5, "peak_rss_mb": rss, "model_bytes": 2**20, "train_s": 3.0,
                "rounds": [{"ms_per_1k": ms - 10}, {"ms_per_1k": ms}, {"ms_per_1k": ms + 5}]}
    result = {"dataset": "d", "train_docs": 1000, "test_docs": 10, "labels": 5, "date": "x", "started_utc": "00:00",
              "machine": "m", "load_before": 0.0, "load_after": 0.0, "rounds": 3, "calls": 5, "threads": 2,
              "command": "c", "rows": [row("xmc", 90.0, 110.0), row("pecos", 100.0, 100.0)]}
    text = "\n".join(bench_predict.dataset_table(result))
    assert "| xmc | 90.00 | 70.00 | 60.00 | 90 | 80 / 90 / 95 | 0.90x | 180 | 0.50 | 110 | 1.10x | 1.0 | 3.0 |" in text
    assert "| pecos | 90.00 | 70.00 | 60.00 | 100 | 90 / 100 / 105 | 1.00x |" in text


import bench_weight_dtype  # noqa: E402


def test_weight_dtype_table_gives_ratios_to_the_float32_copy():
    def row(weights, mb, seconds):
        return {"weights": weights, "model_bytes": mb * 2**20, "predict_s": seconds,
                "P@1": 0.9, "P@3": 0.8, "P@5": 0.7, "PSP@5": 0.6}
    result = {"dataset": "d", "n_test": 2000, "train_s": 1.0, "date": "x", "command": "c",
              "rows": [row("float32", 10.0, 2.0), row("int16", 7.0, 1.9), row("int8", 5.5, 1.8)]}
    text = bench_weight_dtype.markdown([result])
    assert "| d | float32 | 10.0 | 1.00 | 1000 | 1.00 | 90.00 | 80.00 | 70.00 | 60.00 |" in text
    assert "| d | int8 | 5.5 | 0.55 | 900 | 0.90 |" in text
    assert "- d: x, `c`" in text


def test_weight_dtype_write_keeps_the_data_sets_not_run(tmp_path):
    """--write builds the section from every saved data set, not only the ones of this run."""
    for name, date in (("bibtex", "new"), ("eurlex57k", "old")):
        (tmp_path / f"{name}.json").write_text(json.dumps({"dataset": name, "date": date, "command": "c"}))
    (tmp_path / "notes.txt").write_text("not a result")
    assert [(r["dataset"], r["date"]) for r in bench_weight_dtype.saved_results(str(tmp_path))] == [
        ("bibtex", "new"), ("eurlex57k", "old")]
