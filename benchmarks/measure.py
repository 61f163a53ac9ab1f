"""Run one ``fit_predict_<peer>`` in a fresh child process and measure its memory.

    args_path = save_inputs("/tmp/x.npz", X_train, Y_train, X_test)
    res = run_in_subprocess("fit_predict_pecos", args_path, topk=10, beam=10, threads=2)
    res["scores"], res["train_s"], res["peak_rss_mb"], res["rss_after_load_mb"], ...

The child is started with the ``spawn`` context (a clean interpreter: no memory, threads or
OpenMP state inherited from the parent), loads the three matrices from the ``.npz``, imports the
peer's library and records ``rss_after_load_mb`` (RSS now) and ``load_peak_rss_mb``; then it
resets the peak counter, runs the function and records ``fit_peak_rss_mb`` (peak during
fit+predict, inputs included). ``peak_rss_mb`` is the child's overall peak and
``model_rss_mb = fit_peak_rss_mb - rss_after_load_mb`` estimates what training + prediction
added on top of the inputs. Peaks are Linux VmHWM, not ``ru_maxrss``: after fork+exec,
``ru_maxrss`` also carries the parent's peak (see :func:`peak_rss_mb`); it is reported as
``ru_maxrss_mb`` for reference only. The result travels back
through a pickle file, so a crash (segfault, OOM kill) or a timeout becomes
``{"error": ...}`` instead of taking the parent down.

``fn_name`` is the name of a function in ``benchmarks/peers.py`` (``fit_predict_pecos``) or a
``"module:function"`` path for any other function with the same signature (e.g. xmc's own).
"""

from __future__ import annotations

import importlib
import json
import logging
import multiprocessing as mp
import os
import pickle
import resource
import sys
import tempfile
import time
import traceback

import numpy as np
import scipy.sparse as sp

_HERE = os.path.dirname(os.path.abspath(__file__))

__all__ = ["save_inputs", "load_inputs", "run_in_subprocess", "current_rss_mb", "peak_rss_mb"]


def save_inputs(path: str, X_train, Y_train, X_test, **extra_arrays) -> str:
    """Store the three csr matrices (and optional extra arrays, e.g. Y_test) in one ``.npz``."""
    arrays = {}
    for name, M in (("X_train", X_train), ("Y_train", Y_train), ("X_test", X_test)):
        M = sp.csr_matrix(M)
        arrays[f"{name}__data"] = M.data
        arrays[f"{name}__indices"] = M.indices
        arrays[f"{name}__indptr"] = M.indptr
        arrays[f"{name}__shape"] = np.asarray(M.shape, dtype=np.int64)
    for k, v in extra_arrays.items():
        if sp.issparse(v):
            v = sp.csr_matrix(v)
            arrays[f"{k}__data"], arrays[f"{k}__indices"] = v.data, v.indices
            arrays[f"{k}__indptr"] = v.indptr
            arrays[f"{k}__shape"] = np.asarray(v.shape, dtype=np.int64)
        else:
            arrays[k] = np.asarray(v)
    np.savez(path, **arrays)  # uncompressed: fast to load, no decompression buffers
    return path if path.endswith(".npz") else path + ".npz"


def load_inputs(path: str, names=("X_train", "Y_train", "X_test")) -> list:
    with np.load(path) as z:
        out = []
        for name in names:
            if f"{name}__data" in z:
                shape = tuple(int(s) for s in z[f"{name}__shape"])
                out.append(
                    sp.csr_matrix(
                        (z[f"{name}__data"], z[f"{name}__indices"], z[f"{name}__indptr"]),
                        shape=shape,
                    )
                )
            else:
                out.append(z[name])
    return out


def _maxrss_mb() -> float:
    # Linux: ru_maxrss is in KiB (macOS: bytes)
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024.0 * 1024.0) if sys.platform == "darwin" else r / 1024.0


def _proc_status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return None


def current_rss_mb() -> float:
    """Resident set size right now (Linux VmRSS; falls back to ru_maxrss)."""
    v = _proc_status_mb("VmRSS")
    return _maxrss_mb() if v is None else v


def peak_rss_mb() -> float:
    """Peak RSS of this process's own address space (Linux VmHWM).

    Not ``ru_maxrss``: in a process started by fork+exec (multiprocessing's spawn), Linux's
    ru_maxrss also keeps the peak of the address space that exec replaced, i.e. the PARENT's
    peak RSS at spawn time (a 40 MB child of a 2 GB parent reports ~2 GB). VmHWM does not.
    """
    v = _proc_status_mb("VmHWM")
    return _maxrss_mb() if v is None else v


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0, /proc/self/clear_refs '5')."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _resolve(fn_name: str):
    if ":" in fn_name:
        mod, fn = fn_name.split(":", 1)
        return getattr(importlib.import_module(mod), fn)
    if _HERE not in sys.path:
        sys.path.insert(0, _HERE)
    import peers

    name = fn_name if fn_name.startswith("fit_predict_") else f"fit_predict_{fn_name}"
    return getattr(peers, name)


def _child(
    fn_name: str, args_path: str, out_path: str, kwargs: dict, env: dict, log_path: str | None
) -> None:
    os.environ.update(env)  # before any OpenMP / Rayon library is loaded
    if log_path:  # fd-level, so native libraries' output (progress bars, logs) goes there too
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        # xmc's per-tree / per-layer timings with wall-clock stamps: a run that times out still
        # shows how far it got, and at what pace (the failure report prints the log's tail)
        logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
        logging.getLogger("xmc").setLevel(logging.INFO)
    result: dict
    try:
        t = time.perf_counter()
        X_train, Y_train, X_test = load_inputs(args_path)
        load_inputs_s = time.perf_counter() - t
        fn = _resolve(fn_name)
        # import the peer's library before the baseline, so it is not counted as "model"
        # (its import time is kept: ``import_s``)
        import_s = None
        if ":" not in fn_name:
            import peers

            short = fn.__name__[len("fit_predict_"):]
            if short in peers.PEER_MODULES:
                import_s = peers.import_seconds(peers.PEER_MODULES[short])
        rss_after_load = current_rss_mb()
        load_peak = peak_rss_mb()
        was_reset = _reset_peak_rss()  # so the next peak is the fit/predict phase alone
        t = time.perf_counter()
        result = dict(fn(X_train, Y_train, X_test, **kwargs))
        result["wall_s"] = time.perf_counter() - t
        if import_s is not None:
            result["import_s"] = import_s
        fit_peak = peak_rss_mb()
        result["load_inputs_s"] = load_inputs_s
        result["rss_after_load_mb"] = rss_after_load
        result["load_peak_rss_mb"] = load_peak
        result["fit_peak_rss_mb"] = fit_peak if was_reset else float("nan")
        result["peak_rss_mb"] = max(load_peak, fit_peak)
        # what training + prediction added on top of the resident inputs (+ imported library)
        result["model_rss_mb"] = (fit_peak if was_reset else result["peak_rss_mb"]) - rss_after_load
        result["rss_end_mb"] = current_rss_mb()
        result["ru_maxrss_mb"] = _maxrss_mb()  # includes the parent's peak: see peak_rss_mb()
    except BaseException as e:  # noqa: BLE001 - report everything to the parent
        result = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        try:
            result["peak_rss_mb"] = peak_rss_mb()
        except Exception:
            pass
    with open(out_path + ".tmp", "wb") as f:
        pickle.dump(result, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(out_path + ".tmp", out_path)


def run_in_subprocess(
    fn_name: str,
    args_path: str,
    *,
    timeout: float | None = None,
    env: dict | None = None,
    log_path: str | None = None,
    **kwargs,
) -> dict:
    """Run ``fn_name(X_train, Y_train, X_test, **kwargs)`` in a fresh spawned process.

    Returns the function's dict plus ``peak_rss_mb``, ``rss_after_load_mb``, ``model_rss_mb``,
    ``fit_peak_rss_mb``, ``load_peak_rss_mb``, ``rss_end_mb``, ``ru_maxrss_mb``, ``wall_s``,
    ``load_inputs_s`` (all measured in the child), or a dict with
    ``"error"`` (and ``"traceback"`` when Python saw it) if the child failed, crashed or ran
    past ``timeout`` seconds (then it is terminated).

    ``env`` is applied to the child's environment before anything is imported there;
    ``OMP_WAIT_POLICY=PASSIVE`` is set unless given (idle OpenMP workers then sleep instead of
    spinning, which would distort timings on a small machine).

    ``log_path``: if given, the child's stdout and stderr (file descriptors 1 and 2, so the
    native libraries' output too) are appended to that file instead of the parent's.
    """
    child_env = {"OMP_WAIT_POLICY": "PASSIVE"}
    child_env.update(env or {})
    ctx = mp.get_context("spawn")
    fd, out_path = tempfile.mkstemp(prefix="peer_result_", suffix=".pkl")
    os.close(fd)
    os.unlink(out_path)
    proc = ctx.Process(
        target=_child,
        args=(fn_name, os.path.abspath(args_path), out_path, kwargs, child_env, log_path),
        name=f"peer-{fn_name}",
    )
    t0 = time.perf_counter()
    proc.start()
    try:
        proc.join(timeout)
        if proc.is_alive():
            proc.terminate()
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()
            return {"error": f"timeout after {timeout} s", "wall_s": time.perf_counter() - t0}
        if not os.path.exists(out_path):
            return {
                "error": f"child exited with code {proc.exitcode} without a result "
                "(crash or killed, e.g. out of memory)",
                "wall_s": time.perf_counter() - t0,
            }
        with open(out_path, "rb") as f:
            result = pickle.load(f)
        result["process_wall_s"] = time.perf_counter() - t0
        return result
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()
        for p in (out_path, out_path + ".tmp"):
            if os.path.exists(p):
                os.unlink(p)


def median_row(runs: list[dict]) -> dict:
    """Median of every numeric field over repeats (first run's value for the rest)."""
    row = dict(runs[0])
    for k, v in runs[0].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            vals = [r[k] for r in runs if isinstance(r.get(k), (int, float))]
            median = float(np.median(vals))
            # counts (trees, calls) stay whole numbers: a table prints "2 trees", not "2.0 trees"
            row[k] = int(median) if all(isinstance(x, int) for x in vals) and median.is_integer() else median
    row["repeats"] = len(runs)
    if len(runs) > 1:
        row["train_s_all"] = [r["train_s"] for r in runs]
    return row


def summary(result: dict) -> str:
    """One-line JSON of the scalar fields of a result (for logs)."""
    return json.dumps(
        {k: v for k, v in result.items() if isinstance(v, (int, float, str, bool))},
        default=str,
    )
