"""Neural models with no config on a CPU, through the CLI, against XR-Linear on the same data.

    python benchmarks/bench_cpu_defaults.py                  # EURLEX57K 800/400 subset + ave-ae110k_subset
    python benchmarks/bench_cpu_defaults.py --write          # also replace the block in BENCHMARKS.md
    python benchmarks/bench_cpu_defaults.py --models lightxml --datasets eurlex
    python benchmarks/bench_cpu_defaults.py --models xr-linear,gudn --datasets eurlex --keep-rows --write

Every step is the README's command with defaults only (``xmc train`` / ``xmc predict``), run as a
child process; wall time and the child's peak RSS (``os.wait4``'s ``ru_maxrss``) are taken per
step. EURLEX57K: a seeded sample of ``--docs`` training and ``--test-docs`` test documents
(``--label-text labels.txt`` for gudn); scored by ``xmc evaluate`` (P@1, P@5). ave-ae110k_subset:
masked-bert's thresholded predictions (its tuned threshold) scored by micro / macro F1 over the
predicted pairs, the share of products with a prediction and the predictions outside the
product's category; XR-Linear's top-50 restricted to the category's labels (the taxonomy) and cut
to 5 is the reference. The machine is shared: the load average before and after is printed.
``--keep-rows``: rerun only ``--models`` / ``--datasets`` and keep the other rows of the work
directory's previous ``rows.json`` (marked in the table as from an earlier run).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "src"))
DATA = os.path.join(ROOT, "..", "shared", "data")
if not os.path.isdir(DATA):
    DATA = "/work/shared/data"

EURLEX_MODELS = ["xr-linear", "lightxml", "gudn", "xtransformer"]


def _open(path: str):
    return gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(path, encoding="utf-8")


def sample_lines(src: str, dst: str, n: int, seed: int) -> None:
    """Write ``n`` seeded random lines of ``src`` to ``dst``, streaming (the parent stays small)."""
    with _open(src) as fh:
        total = sum(1 for _ in fh)
    keep = set(np.random.default_rng(seed).choice(total, min(n, total), replace=False).tolist())
    with _open(src) as fh, open(dst, "w", encoding="utf-8") as out:
        for i, line in enumerate(fh):
            if i in keep:
                out.write(line)


def run_step(argv: list[str], log: str) -> dict:
    """Run ``xmc ARGV`` as a child: wall seconds, peak RSS (MB) of that child, exit code."""
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"), OMP_WAIT_POLICY="PASSIVE")
    started = time.perf_counter()
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"$ xmc {' '.join(argv)}\n")
        fh.flush()
        proc = subprocess.Popen([sys.executable, "-m", "xmc.cli.main", *argv], stdout=fh, stderr=fh, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"seconds": time.perf_counter() - started, "peak_rss_mb": usage.ru_maxrss / 1024,
            "rc": proc.returncode}


def evaluate_json(truth: str, pred: str, train: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    out = subprocess.run([sys.executable, "-m", "xmc.cli.main", "evaluate", "--truth", truth, "--pred", pred,
                          "--train", train, "--k", "1,5", "--json"], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout)


def budget_line(log: str) -> str:
    lines = [line for line in open(log, encoding="utf-8") if line.startswith("budget for")]
    return lines[-1].strip() if lines else ""


def bench_eurlex(args, work: str) -> list[dict]:
    d = os.path.join(DATA, "eurlex57k")
    train, test = os.path.join(work, "eurlex-train.jsonl"), os.path.join(work, "eurlex-test.jsonl")
    sample_lines(os.path.join(d, "train.jsonl.gz"), train, args.docs, seed=0)
    sample_lines(os.path.join(d, "test.jsonl.gz"), test, args.test_docs, seed=1)
    rows = []
    for name in [m for m in EURLEX_MODELS if m in args.models]:
        model, pred, log = (os.path.join(work, f"eurlex-{name}{suffix}") for suffix in ("", ".pred.jsonl", ".log"))
        shutil.rmtree(model, ignore_errors=True)
        extra = ["--label-text", os.path.join(d, "labels.txt")] if name == "gudn" else []
        fit = run_step(["train", "--model", name, "--train", train, *extra, "--out", model], log)
        row = {"dataset": "eurlex", "model": name, "train": fit, "budget": budget_line(log),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        if fit["rc"] == 0:
            row["predict"] = run_step(["predict", "--model", model, "--input", test, "--out", pred, "--topk", "5"], log)
            if row["predict"]["rc"] == 0:
                report = evaluate_json(test, pred, train)
                row["metrics"] = {"P@1": report["P@1"], "P@5": report["P@5"]}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def _pairs(pred: str, test, taxonomy, restrict: int | None):
    """CSR (n, L) of predicted pairs (test's label space), rows in test order; unknown names dropped.

    ``restrict``: keep only labels relevant to the product's category, then the first ``restrict``.
    """
    import scipy.sparse as sp

    index = {name: j for j, name in enumerate(test.labels.names)}
    by_id = {}
    with open(pred, encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            by_id[rec["id"]] = rec["labels"]
    mask, _ = taxonomy.mask(test.categories, n=len(test))
    mask = sp.csr_matrix(mask)
    rows, cols, outside = [], [], 0
    for i, doc_id in enumerate(test.ids):
        relevant = set(mask.indices[mask.indptr[i]:mask.indptr[i + 1]].tolist())
        labels = [index[n] for n in by_id.get(doc_id, []) if n in index]
        if restrict is not None:
            labels = [j for j in labels if j in relevant][:restrict]
        outside += sum(j not in relevant for j in labels)
        rows += [i] * len(labels)
        cols += labels
    Y = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(test), len(test.labels)))
    return Y, outside


def bench_ave(args, work: str) -> list[dict]:
    from xmc.data import read_jsonl
    from xmc.metrics.classification import macro_prf, micro_prf
    from xmc.neural.taxonomy import Taxonomy

    d = os.path.join(DATA, "ave-ae110k_subset")
    train, test_path, tax = (os.path.join(d, f) for f in ("train.jsonl", "test.jsonl", "taxonomy.json"))
    rows = []
    for name in [m for m in ("xr-linear", "masked-bert") if m in args.models]:
        model, pred, log = (os.path.join(work, f"ave-{name}{suffix}") for suffix in ("", ".pred.jsonl", ".log"))
        shutil.rmtree(model, ignore_errors=True)
        extra = ["--taxonomy", tax] if name == "masked-bert" else []
        fit = run_step(["train", "--model", name, "--train", train, *extra, "--out", model], log)
        row = {"dataset": "ave", "model": name, "train": fit, "budget": budget_line(log),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        if fit["rc"] == 0:
            topk = ["--topk", "50"] if name == "xr-linear" else []
            row["predict"] = run_step(["predict", "--model", model, "--input", test_path, "--out", pred, *topk], log)
        rows.append(row)
    train_data = read_jsonl(train)
    test = read_jsonl(test_path, labels=train_data.labels)
    taxonomy = Taxonomy.from_file(tax, test.labels)
    for row in rows:
        pred = os.path.join(work, f"ave-{row['model']}.pred.jsonl")
        if row.get("predict", {}).get("rc") != 0:
            continue
        Y_pred, outside = _pairs(pred, test, taxonomy, 5 if row["model"] == "xr-linear" else None)
        _, _, micro_f1 = micro_prf(test.Y, Y_pred)
        _, _, macro_f1 = macro_prf(test.Y, Y_pred)
        covered = float(np.mean(np.diff(Y_pred.indptr) > 0))
        row["metrics"] = {"micro_f1": micro_f1, "macro_f1": macro_f1, "covered": covered, "outside": outside,
                          "pairs": int(Y_pred.nnz)}
        print(json.dumps(row), flush=True)
    return rows


def merge_rows(previous: list[dict], rows: list[dict]) -> list[dict]:
    """``previous`` with the rows rerun now replaced (same dataset and model), the others marked ``earlier``."""
    new = {(r["dataset"], r["model"]): r for r in rows}
    merged = [new.pop((r["dataset"], r["model"]), None) or dict(r, earlier=True) for r in previous]
    return merged + list(new.values())


def _name(row: dict) -> str:
    return f"{row['model']} (earlier run)" if row.get("earlier") else row["model"]


def render(rows: list[dict], load: tuple[float, float], args) -> str:
    kept = any(r.get("earlier") for r in rows)
    command = (f"`python benchmarks/bench_cpu_defaults.py --docs {args.docs} --test-docs {args.test_docs}"
               + (f" --models {','.join(args.models)} --datasets {args.datasets} --keep-rows" if kept else "")
               + " --write`")
    lines = [f"Machine: 2-core shared CPU box (load average {load[0]:.1f} before, {load[1]:.1f} after; other "
             f"engineers' jobs ran beside it, so times are upper bounds). One run per row. Command: {command}; "
             "every step is `xmc train` / `xmc predict` with no `--config`."
             + (" Rows marked \"earlier run\" were kept from the previous full run of the script (same data and "
                "command, without `--keep-rows`); the others were rerun together." if kept else ""), ""]
    eur = [r for r in rows if r["dataset"] == "eurlex"]
    if eur:
        base = next((r["metrics"]["P@1"] for r in eur if r["model"] == "xr-linear" and "metrics" in r), None)
        lines += [f"EURLEX57K: {args.docs} training documents, {args.test_docs} test documents (seeded samples of "
                  "train / test).", "",
                  "| model | train s | train peak RSS MB | predict s | predict peak RSS MB | P@1 | P@5 | P@1 / XR-Linear |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in eur:
            m, p = r.get("metrics", {}), r.get("predict", {})
            ratio = f"{m['P@1'] / base:.2f}" if m and base else "-"
            lines.append(f"| {_name(r)} | {r['train']['seconds']:.0f} | {r['train']['peak_rss_mb']:.0f} | "
                         f"{p.get('seconds', float('nan')):.0f} | {p.get('peak_rss_mb', float('nan')):.0f} | "
                         + (f"{100 * m['P@1']:.2f} | {100 * m['P@5']:.2f} | {ratio} |" if m else "failed | | |"))
        lines.append("")
    ave = [r for r in rows if r["dataset"] == "ave"]
    if ave:
        base = next((r["metrics"]["micro_f1"] for r in ave if r["model"] == "xr-linear" and "metrics" in r), None)
        lines += ["ave-ae110k_subset (1,568 training / 524 test products; masked-bert with `--taxonomy`). "
                  "XR-Linear: its top-50 restricted to the category's labels, first 5 kept. masked-bert: its "
                  "thresholded predictions (threshold tuned on its validation split).", "",
                  "| model | train s | train peak RSS MB | predict s | predict peak RSS MB | pairs | micro F1 | "
                  "macro F1 | products with a prediction | outside category | micro F1 / XR-Linear |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in ave:
            m, p = r.get("metrics", {}), r.get("predict", {})
            ratio = f"{m['micro_f1'] / base:.2f}" if m and base else "-"
            lines.append(f"| {_name(r)} | {r['train']['seconds']:.0f} | {r['train']['peak_rss_mb']:.0f} | "
                         f"{p.get('seconds', float('nan')):.0f} | {p.get('peak_rss_mb', float('nan')):.0f} | "
                         + (f"{m['pairs']} | {100 * m['micro_f1']:.2f} | {100 * m['macro_f1']:.2f} | "
                            f"{100 * m['covered']:.1f}% | {m['outside']} | {ratio} |" if m else "failed | | | | | |"))
        lines.append("")
    budgets = [f"- {r['dataset']} {_name(r)}: {r['budget']}" for r in rows if r.get("budget")]
    if budgets:
        lines += ["Budgets as `xmc train` printed them:", "", *budgets]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=800)
    parser.add_argument("--test-docs", type=int, default=400)
    parser.add_argument("--models", default=",".join(EURLEX_MODELS + ["masked-bert"]))
    parser.add_argument("--datasets", default="eurlex,ave")
    parser.add_argument("--work", default="/tmp/xmc-bench-cpu-defaults")
    parser.add_argument("--write", action="store_true", help="replace the block in BENCHMARKS.md")
    parser.add_argument("--keep-rows", action="store_true",
                        help="keep the rows not rerun from the work directory's previous rows.json")
    args = parser.parse_args()
    args.models = args.models.split(",")
    os.makedirs(args.work, exist_ok=True)
    load_before = os.getloadavg()[0]
    rows = []
    if "eurlex" in args.datasets:
        rows += bench_eurlex(args, args.work)
    if "ave" in args.datasets:
        rows += bench_ave(args, args.work)
    previous_path = os.path.join(args.work, "rows.json")
    if args.keep_rows and os.path.exists(previous_path):
        with open(previous_path, encoding="utf-8") as fh:
            rows = merge_rows(json.load(fh), rows)
    with open(os.path.join(args.work, "rows.json.tmp"), "w", encoding="utf-8") as fh:
        json.dump(rows, fh, indent=1)
    os.replace(os.path.join(args.work, "rows.json.tmp"), previous_path)
    text = render(rows, (load_before, os.getloadavg()[0]), args)
    print(text)
    if args.write:
        from markdown_section import write_section

        write_section("cpu_defaults", text, "Defaults on a CPU: neural models with no config (CLI)")


if __name__ == "__main__":
    main()
