"""Ray against Dask for xmc's distributed XR-Linear: the measurements behind the choice of engine.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_engines.py --write

Per engine, each measurement in a fresh process (median of ``--repeats`` where it is cheap):

- install footprint: ``pip install --target`` of the engine into an empty directory (what a user
  adds; measured once by hand, passed as ``--footprint ray=MB,dask=MB``);
- import time of the client module (``import ray`` / ``import dask.distributed``) in a new process;
- start-up of a 2-worker local cluster (``ray.init(num_cpus=2)`` / ``LocalCluster(n_workers=2,
  threads_per_worker=1)``) and its memory: summed PSS of every process the cluster adds (Linux
  ``/proc/PID/smaps_rollup``, so pages shared between processes count once);
- per-task overhead: 200 no-op tasks submitted together, wall time per task;
- shipping a sparse matrix: a CSR matrix of ``--nnz`` non-zeros put once and summed by one task on
  each worker; time, and the memory each worker's process adds (USS), which tells whether the
  workers copy it (Dask: one copy per worker process) or map it (Ray: the object store's shared
  memory, numpy buffers read zero-copy).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)

import markdown_section  # noqa: E402

IMPORTS = {"ray": "import ray", "dask": "import dask.distributed"}


def _pss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _uss_mb(pid: int) -> float:
    import psutil

    try:
        return psutil.Process(pid).memory_full_info().uss / 2**20
    except (psutil.Error, OSError):
        return 0.0


def _new_pids(before: set[int]) -> list[int]:
    import psutil

    return [p.pid for p in psutil.process_iter() if p.pid not in before and p.pid != os.getpid()]


def _matrix(nnz: int):
    import numpy as np
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    n, d = nnz // 50, 1_000_000
    indptr = np.arange(0, nnz + 1, 50, dtype=np.int64)
    indices = np.sort(rng.integers(0, d, size=(n, 50)).astype(np.int32), axis=1).ravel()
    return sp.csr_matrix((rng.random(nnz, dtype=np.float32), indices, indptr), shape=(n, d))


def _noop(i):
    return i


def _sum_and_uss(X):
    import os as _os

    # the worker's own memory right after it holds X (its task result travels back with the sum)
    return float(X.data.sum()), _uss_mb(_os.getpid()), _os.getpid(), bool(X.data.flags.writeable)


def child(engine: str, nnz: int) -> dict:
    """One engine's cluster measurements, in this (fresh) process."""
    import psutil

    before = {p.pid for p in psutil.process_iter()}
    t0 = time.perf_counter()
    if engine == "ray":
        import ray

        t1 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        noop = ray.remote(num_cpus=1)(_noop)
        ray.get([noop.remote(i) for i in range(2)])  # the workers exist once a task ran
    else:
        import dask.distributed as dd

        t1 = time.perf_counter()
        cluster = dd.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        client = dd.Client(cluster)
        client.gather(client.map(_noop, range(2), pure=False))
    t2 = time.perf_counter()
    time.sleep(2.0)
    pids = _new_pids(before)
    cluster_pss = sum(_pss_mb(p) for p in pids)
    driver_pss = _pss_mb(os.getpid())
    # per-task overhead
    t3 = time.perf_counter()
    if engine == "ray":
        ray.get([noop.remote(i) for i in range(200)])
    else:
        client.gather(client.map(_noop, range(200), pure=False))
    per_task_ms = 1000 * (time.perf_counter() - t3) / 200
    X = _matrix(nnz)
    x_mb = (X.data.nbytes + X.indices.nbytes + X.indptr.nbytes) / 2**20
    worker_before = {}
    t4 = time.perf_counter()
    if engine == "ray":
        ref = ray.put(X)
        task = ray.remote(num_cpus=1)(_sum_and_uss)
        out = ray.get([task.remote(ref) for _ in range(2)])
    else:
        [fut] = client.scatter([X], broadcast=True)
        out = client.gather([client.submit(_sum_and_uss, fut, pure=False, workers=[w])
                             for w in client.scheduler_info()["workers"]])
    ship_s = time.perf_counter() - t4
    for _s, uss, pid, _w in out:
        worker_before.setdefault(pid, uss)
    res = {
        "engine": engine, "import_s_in_driver": t1 - t0, "start_s": t2 - t1, "cluster_processes": len(pids),
        "cluster_pss_mb": cluster_pss, "driver_pss_mb": driver_pss, "per_task_ms": per_task_ms,
        "matrix_mb": x_mb, "ship_s": ship_s, "worker_uss_with_matrix_mb": sorted(u for _s, u, _p, _w in out),
        "workers_distinct": len({p for _s, _u, p, _w in out}), "zero_copy_readonly": not any(w for *_r, w in out),
    }
    if engine == "ray":
        ray.shutdown()
    else:
        client.close()
        cluster.close()
    return res


def import_time(engine: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        code = f"import time; t = time.perf_counter(); {IMPORTS[engine]}; print(time.perf_counter() - t)"
        times.append(float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                          check=True).stdout.strip()))
    return statistics.median(times)


def render(results: list[dict], footprint: dict, command: str, machine: str) -> str:
    lines = [
        "Why xmc's distributed XR-Linear runs on Ray or Dask (see README, \"Bigger than one machine\"). "
        "Each engine in a fresh process; a 2-worker local cluster (Ray: `ray.init(num_cpus=2)`; Dask: "
        "`LocalCluster(n_workers=2, threads_per_worker=1)`). Cluster memory is the summed PSS of the "
        "processes the cluster adds (shared pages counted once); the sparse matrix is put once and read by "
        "one task on each worker, whose own memory (USS) is then reported. Ray ran with pyarrow hidden: "
        "this venv's pyarrow (pulled by `datasets`) needs numpy >= 2, and Ray imports it on its first task "
        "submission, which then fails with an ImportError.",
        "",
        f"Machine: {machine}, shared with other jobs. Command: `{command}`",
        "",
        "| engine | install (MB) | import (s) | 2-worker cluster start (s) | cluster processes | cluster PSS (MB) "
        "| per-task overhead (ms) | ship CSR to both workers (s) | worker USS holding it (MB) | read zero-copy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        uss = " / ".join(f"{u:.0f}" for u in r["worker_uss_with_matrix_mb"])
        lines.append(
            f"| {r['engine']} | {footprint.get(r['engine'], float('nan')):.0f} | {r['import_s']:.2f} "
            f"| {r['start_s']:.1f} | {r['cluster_processes']} | {r['cluster_pss_mb']:.0f} | {r['per_task_ms']:.2f} "
            f"| {r['ship_s']:.2f} ({r['matrix_mb']:.0f} MB) | {uss} | {'yes' if r['zero_copy_readonly'] else 'no'} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", default="ray,dask")
    ap.add_argument("--nnz", type=int, default=20_000_000, help="non-zeros of the shipped CSR matrix")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--footprint", default="", help="install sizes measured by hand, e.g. ray=260,dask=45")
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.nnz)))
        return
    footprint = {k: float(v) for k, v in (p.split("=") for p in args.footprint.split(",") if p)}
    results = []
    import tempfile

    # Ray imports pyarrow when it is installed, and this venv's pyarrow (pulled by `datasets`) needs
    # numpy >= 2: Ray's first task fails with an ImportError. Ray is measured with pyarrow hidden.
    noarrow = tempfile.mkdtemp(prefix="noarrow_")
    with open(os.path.join(noarrow, "sitecustomize.py"), "w") as f:
        f.write("import sys\nsys.modules['pyarrow'] = None\n")
    env = {**os.environ, "PYTHONPATH": noarrow}
    for engine in args.engines.split(","):
        r = json.loads(subprocess.run([sys.executable, __file__, "--child", engine, "--nnz", str(args.nnz)],
                                      capture_output=True, text=True, check=True,
                                      env=env).stdout.strip().splitlines()[-1])
        r["import_s"] = import_time(engine, args.repeats)
        print(json.dumps(r), flush=True)
        results.append(r)
    from bench_xr_linear import machine

    command = "OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_engines.py " + " ".join(sys.argv[1:])
    body = render(results, footprint, command, machine())
    print(body)
    if args.write:
        markdown_section.write_section("engines", body, "Distributed engines: Ray against Dask")


if __name__ == "__main__":
    main()
