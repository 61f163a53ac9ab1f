"""Peer extreme-classification libraries behind one call, for side-by-side benchmarks.

Every ``fit_predict_<peer>`` takes the same sparse inputs and returns the same dict, so a
benchmark can run xmc's own XR-Linear next to them on exactly the same matrices::

    fit_predict_<peer>(X_train, Y_train, X_test, *, topk=10, beam=10, threads=2, **options) -> {
        "scores": csr (n_test x L) holding the top-k scores of each test row,
        "train_s": float,          # training wall time (see each peer for what is in it)
        "predict_s": float,        # batch prediction of all of X_test: median of
                                   # ``predict_calls`` calls after an untimed one (omikuji: one pass)
        "latency_ms_p50": float,   # median single-document latency over <= 200 test rows
                                   # (one row per call, latency_threads=1 by default: see below)
        "latency_ms_p90": float,
        "model_bytes": int,        # size on disk after saving
        ... peer-specific extras (documented per function)
    }

Inputs: ``X_*`` csr float32 (any csr is converted: float32, int32 indices, canonical = sorted
indices, no duplicates), ``Y_train`` csr n x L with nonzeros marking the positive labels.
Labels are the column ids 0..L-1; the returned ``scores`` always has L columns.

Single-document latency is measured with ``latency_threads`` threads (option, default 1): one
query gains nothing from a pool, and waking pool threads (OMP_WAIT_POLICY=PASSIVE) costs more
than the query itself on these sizes. Batch prediction uses ``threads``.

Gotchas (found while wiring them up; numbers are eurlex57k, 200k-feature 1-2-gram TF-IDF):
- pecos does not normalise its input rows; omikuji and napkinXC do. Feed l2-normalised rows
  (TF-IDF already is); on raw binary bibtex features pecos loses ~10 points of P@1.
- pecos: X csr float32, Y **csc** float32; ``threads`` must be passed to PIFA, Indexer.gen and
  train separately (each defaults to -1 = all CPUs). The in-memory model returned by train
  predicts ~10x slower than the same model reloaded ``is_predict_only=True``.
- omikuji: trains only from an XC text file (474 MiB for eurlex57k, ~20 s to write); it has no
  seed, so P@k moves by a few 0.1 points from run to run; predict() takes one document as a
  list of (feature, value) pairs (the binding's own Python work is ~0.4 ms/doc of the ~10 ms);
  with 200k features few weight vectors reach the 0.1 densify threshold, so prediction runs on
  sparse weights (~10 ms/doc). Its threads come from ``n_threads`` at train time and
  ``init_prediction_thread_pool`` at predict time (default 0 = all CPUs).
- napkinXC: ``threads`` is a constructor argument (0 = all CPUs) used for fit and predict; it
  can be changed after fit with ``set_params(threads=...)``. ``seed`` defaults to the clock.

The peers' libraries are imported lazily (``PEER_MODULES`` names them), so importing this file
costs nothing and a missing library only breaks its own peer.

Peers:
- ``pecos``: libpecos XR-Linear, default settings (PIFA embedding, hierarchical 16-way
  spherical k-means with leaves <= 100 labels, L2-hinge dual CD, weight threshold 0.1,
  l3-hinge post-processing), predict with ``beam_size=beam, only_topk=topk``.
- ``omikuji_parabel``: omikuji defaults = its "Parabel, better parallelized" setting (3 trees,
  balanced 2-means, max_depth 20, min_branch_size 100, hinge loss, C=1).
- ``omikuji_bonsai``: omikuji's documented Bonsai-like setting: regular (unbalanced) k-means
  with ``cluster.k=100``, ``max_depth=3``; the rest default (3 trees).
- ``napkinxc_plt``: napkinXC PLT with its defaults (hierarchical balanced 2-means tree,
  max 100 leaves per pre-leaf node, logistic loss via LIBLINEAR C=10, exact top-k search).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import numpy as np
import scipy.sparse as sp

__all__ = [
    "PEERS",
    "PEER_MODULES",
    "fit_predict_pecos",
    "fit_predict_omikuji_parabel",
    "fit_predict_omikuji_bonsai",
    "fit_predict_napkinxc_plt",
    "write_xc_file",
]

N_LATENCY_ROWS = 200
# Batch calls timed per model. One call per process moved by up to 1.5x on a 2-core VM (EURLEX57K:
# four successive calls on one model took 177-272 ms / 1k docs), more than the gaps being measured.
N_PREDICT_CALLS = 5

# peer name -> module that fit_predict_<peer> imports (so a harness can import it up front)
PEER_MODULES = {
    "pecos": "pecos.xmc.xlinear.model",
    "omikuji_parabel": "omikuji",
    "omikuji_bonsai": "omikuji",
    "napkinxc_plt": "napkinxc.models",
}
PEERS = tuple(PEER_MODULES)


# --------------------------------------------------------------------------- helpers


def _csr32(X) -> sp.csr_matrix:
    """csr float32 with int32 indices, sorted and without duplicates (what the C++/Rust sides expect)."""
    X = sp.csr_matrix(X, dtype=np.float32)
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()  # also sorts indices
    if X.indices.dtype != np.int32 or X.indptr.dtype != np.int32:
        if X.nnz < 2**31:
            X = sp.csr_matrix(
                (X.data, X.indices.astype(np.int32), X.indptr.astype(np.int32)), shape=X.shape
            )
    return X


def _binary_csr(Y) -> sp.csr_matrix:
    Y = _csr32(Y)
    Y.eliminate_zeros()
    Y.data[:] = 1.0
    return Y


def _pairs_to_csr(rows, n_rows: int, n_cols: int) -> sp.csr_matrix:
    """list (one per row) of [(label, score), ...] -> csr n_rows x n_cols."""
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    nnz = int(indptr[-1])
    indices = np.empty(nnz, dtype=np.int32)
    data = np.empty(nnz, dtype=np.float32)
    k = 0
    for r in rows:
        for lab, s in r:
            indices[k] = lab
            data[k] = s
            k += 1
    if nnz and (indices.min() < 0 or indices.max() >= n_cols):
        raise ValueError(f"peer predicted a label id outside 0..{n_cols - 1}")
    out = sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_cols))
    out.sum_duplicates()
    return out


def _keep_topk(S: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep at most k largest entries per row (peers that return more than asked)."""
    S = sp.csr_matrix(S, dtype=np.float32)
    counts = np.diff(S.indptr)
    if counts.size == 0 or counts.max() <= k:
        return S
    rows = []
    for i in range(S.shape[0]):
        a, b = S.indptr[i], S.indptr[i + 1]
        d, j = S.data[a:b], S.indices[a:b]
        if b - a > k:
            sel = np.argpartition(-d, k - 1)[:k]
            d, j = d[sel], j[sel]
        rows.append(list(zip(j.tolist(), d.tolist())))
    return _pairs_to_csr(rows, S.shape[0], S.shape[1])


def import_seconds(*modules: str) -> float:
    """Seconds to import ``modules`` in this process (0 when they are loaded already): a library's
    load cost. ``measure._child`` times a peer's library this way before calling it (PECOS loads its
    C++ library there); xmc's benchmark function times its own (its kernels load at their first call)."""
    import importlib

    t = time.perf_counter()
    for name in modules:
        importlib.import_module(name)
    return time.perf_counter() - t


def median_call_seconds(call, n_calls: int) -> float:
    """Median wall time of ``n_calls`` calls of ``call()``; the caller makes an untimed call first
    (it warms caches and the thread pool, and gives the scores)."""
    times = []
    for _ in range(max(1, int(n_calls))):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def _latency_stats(call, n: int, n_warmup: int = 3) -> dict:
    """Time ``call(i)`` for i in 0..n-1 (after a few untimed warm-up calls)."""
    for i in range(min(n_warmup, n)):
        call(i)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        call(i)
        times.append(time.perf_counter() - t0)
    if not times:
        return {"latency_ms_p50": float("nan"), "latency_ms_p90": float("nan")}
    ms = np.asarray(times) * 1e3
    return {
        "latency_ms_p50": float(np.percentile(ms, 50)),
        "latency_ms_p90": float(np.percentile(ms, 90)),
        "latency_n": int(n),
    }


def _path_bytes(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def write_xc_file(path: str, X, Y, *, value_fmt: str = "%.7g") -> str:
    """Write (X, Y) in Extreme Classification Repository format.

    Header ``n_points n_features n_labels``; each line ``l1,l2,... f:v f:v ...``; a row without
    labels starts with a space. Values are written with 7 significant digits (float32 precision).
    """
    X = _csr32(X)
    Y = _binary_csr(Y)
    fmt = value_fmt
    with open(path, "w", encoding="ascii", buffering=1 << 22) as f:
        f.write(f"{X.shape[0]} {X.shape[1]} {Y.shape[1]}\n")
        Xi, Xd, Xp = X.indices, X.data, X.indptr
        Yi, Yp = Y.indices, Y.indptr
        for i in range(X.shape[0]):
            labs = ",".join(map(str, Yi[Yp[i] : Yp[i + 1]].tolist()))
            a, b = Xp[i], Xp[i + 1]
            feats = " ".join(
                f"{j}:{fmt % v}" for j, v in zip(Xi[a:b].tolist(), Xd[a:b].tolist())
            )
            f.write(f"{labs} {feats}\n")
    return path


# --------------------------------------------------------------------------- pecos


def train_pecos(X_train, Y_train, *, threads: int = 2, indexer_kwargs: dict | None = None,
                train_kwargs: dict | None = None):
    """PECOS's README pipeline, PIFA -> ``Indexer.gen`` -> ``XLinearModel.train`` (its defaults unless given).

    Returns (model, cluster chain, (start, embedded, indexed, trained) ``perf_counter`` times).
    """
    from pecos.xmc import Indexer, LabelEmbeddingFactory
    from pecos.xmc.xlinear.model import XLinearModel

    X_train = _csr32(X_train)
    Y = _binary_csr(Y_train).tocsc()  # pecos wants Y as csc float32
    t0 = time.perf_counter()
    label_feat = LabelEmbeddingFactory.create(Y, X_train, method="pifa", threads=threads)
    t1 = time.perf_counter()
    chain = Indexer.gen(label_feat, threads=threads, **(indexer_kwargs or {}))
    t2 = time.perf_counter()
    model = XLinearModel.train(X_train, Y, C=chain, threads=threads, **(train_kwargs or {}))
    return model, chain, (t0, t1, t2, time.perf_counter())


def fit_predict_pecos(
    X_train, Y_train, X_test, *, topk: int = 10, beam: int = 10, threads: int = 2, **options
) -> dict:
    """libpecos XR-Linear with its default settings.

    Pipeline (as in pecos' README / ``pecos.xmc.xlinear.train``): PIFA label embedding ->
    ``Indexer.gen`` (hierarchical k-means, defaults) -> ``XLinearModel.train`` (defaults).
    ``train_s`` covers all three steps (``embed_s``/``index_s``/``fit_s`` give the split).

    ``scores`` come from the in-memory (Python-side) model, as returned by ``train``.
    ``predict_s`` and the latencies are measured on the saved model reloaded with
    ``is_predict_only=True``, pecos' documented fast path for inference (C++ all the way, same
    scores: ``predict_only_matches`` checks it); the in-memory model's times are in
    ``predict_s_inmem`` / ``latency_ms_p50_inmem`` (several times slower).

    options:
        indexer_kwargs: dict passed to ``Indexer.gen`` (default: none -> pecos defaults)
        train_kwargs: dict passed to ``XLinearModel.train`` (default: none -> pecos defaults)
        n_latency: number of rows for the latency measurement (default 200)
        predict_calls: timed batch calls of the predict-only model (default N_PREDICT_CALLS)
        second_fit: train once more at the end, in the same process (``train_warm_s``), as
            bench_xr_linear does for xmc
    """
    from pecos.xmc.xlinear.model import XLinearModel

    X_train = _csr32(X_train)
    X_test = _csr32(X_test)
    indexer_kwargs = dict(options.get("indexer_kwargs") or {})
    train_kwargs = dict(options.get("train_kwargs") or {})
    n_lat = min(int(options.get("n_latency", N_LATENCY_ROWS)), X_test.shape[0])
    lat_threads = int(options.get("latency_threads", 1))
    n_calls = int(options.get("predict_calls", N_PREDICT_CALLS))

    def train():
        return train_pecos(X_train, Y_train, threads=threads, indexer_kwargs=indexer_kwargs, train_kwargs=train_kwargs)

    model, _, (t0, t1, t2, t3) = train()

    pred_kw = dict(beam_size=beam, only_topk=topk, threads=threads)
    t4 = time.perf_counter()
    scores = model.predict(X_test, **pred_kw)
    predict_s = time.perf_counter() - t4

    rows = [X_test[i : i + 1] for i in range(n_lat)]
    lat_kw = {**pred_kw, "threads": lat_threads}
    lat_inmem = _latency_stats(lambda i: model.predict(rows[i], **lat_kw), n_lat)

    tmp = tempfile.mkdtemp(prefix="peer_pecos_")
    try:
        model.save(tmp)
        model_bytes = _path_bytes(tmp)
        del model
        fast = XLinearModel.load(tmp, is_predict_only=True)
        scores_fast = fast.predict(X_test, **pred_kw)
        predict_s_fast = median_call_seconds(lambda: fast.predict(X_test, **pred_kw), n_calls)
        lat = _latency_stats(lambda i: fast.predict(rows[i], **lat_kw), n_lat)
        del fast
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # sanity: both paths should give the same top-k
    diff = (scores.tocsr() - scores_fast.tocsr()).tocsr()
    same = diff.nnz == 0 or float(abs(diff).max()) < 1e-4
    warm = {}
    if options.get("second_fit"):
        _, _, times = train()
        warm["train_warm_s"] = times[3] - times[0]
    return {
        "scores": _keep_topk(scores.tocsr(), topk),
        "train_s": t3 - t0,
        "embed_s": t1 - t0,
        "index_s": t2 - t1,
        "fit_s": t3 - t2,
        "predict_s": predict_s_fast,
        "predict_calls": n_calls,
        "predict_s_inmem": predict_s,
        "predict_only_matches": bool(same),
        **lat,
        "latency_ms_p50_inmem": lat_inmem["latency_ms_p50"],
        "latency_threads": lat_threads,
        "model_bytes": model_bytes,
        **warm,
    }


# --------------------------------------------------------------------------- omikuji


def _omikuji_fit_predict(
    X_train, Y_train, X_test, *, topk, beam, threads, hyper: dict, options: dict
) -> dict:
    import omikuji
    from omikuji import _libomikuji

    X_test = _csr32(X_test)
    n_labels = Y_train.shape[1]
    n_lat = min(int(options.get("n_latency", N_LATENCY_ROWS)), X_test.shape[0])
    densify = options.get("densify", 0.1)
    lat_threads = int(options.get("latency_threads", 1))
    hyper = {**hyper, **(options.get("hyper_param") or {})}

    hp = omikuji.Model.default_hyper_param()
    for k, v in hyper.items():
        if not hasattr(hp, k):
            raise ValueError(f"unknown omikuji hyper-parameter {k!r}")
        setattr(hp, k, v)

    tmpdir = tempfile.mkdtemp(prefix="peer_omikuji_")
    try:
        data_path = options.get("xc_train_path")
        write_s = 0.0
        if not data_path:
            data_path = os.path.join(tmpdir, "train_xc.txt")
            t = time.perf_counter()
            write_xc_file(data_path, X_train, Y_train)
            write_s = time.perf_counter() - t

        # Same steps as omikuji.Model.train_on_data, split so that parsing the text file is
        # timed apart from training (load_s is not in train_s).
        lib, ffi = _libomikuji.lib, _libomikuji.ffi
        pool = omikuji._ThreadPoolHandle(threads)
        t0 = time.perf_counter()
        ds = lib.load_omikuji_data_set(ffi.new("char[]", data_path.encode()), pool.ptr)
        if ds == ffi.NULL:
            raise RuntimeError(f"omikuji failed to load {data_path}")
        ds = ffi.gc(ds, lib.free_omikuji_data_set)
        t1 = time.perf_counter()
        model_ptr = lib.train_omikuji_model(ds, hp, pool.ptr)
        if model_ptr == ffi.NULL:
            raise RuntimeError("omikuji failed to train")
        model = omikuji.Model(model_ptr)
        t2 = time.perf_counter()
        del ds  # free the parsed training set before prediction

        model_dir = os.path.join(tmpdir, "model")
        os.makedirs(model_dir, exist_ok=True)
        model.save(model_dir)
        model_bytes = _path_bytes(model_dir)

        densify_s = 0.0
        if densify:
            t = time.perf_counter()
            model.densify_weights(float(densify), n_threads=threads)
            densify_s = time.perf_counter() - t
        model.init_prediction_thread_pool(threads)

        Xi, Xd, Xp = X_test.indices, X_test.data, X_test.indptr

        def pairs(i):
            a, b = Xp[i], Xp[i + 1]
            return list(zip(Xi[a:b].tolist(), Xd[a:b].tolist()))

        # omikuji predicts one document per call: batch time = the loop over all test docs, one
        # pass (not predict_calls passes: it is 25-36x PECOS's time on EURLEX57K, so noise is moot).
        # Building the (feature, value) list from the csr row is not timed; the binding's own
        # work (sorting, checks, copying into C arrays) is.
        out = []
        predict_s = 0.0
        for i in range(X_test.shape[0]):
            p = pairs(i)
            t = time.perf_counter()
            out.append(model.predict(p, beam_size=beam, top_k=topk))
            predict_s += time.perf_counter() - t
        lat_in = [pairs(i) for i in range(n_lat)]
        if lat_threads != threads:
            model.init_prediction_thread_pool(lat_threads)
        lat = _latency_stats(lambda i: model.predict(lat_in[i], beam_size=beam, top_k=topk), n_lat)
        n_trees = model.n_trees
        del model
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    return {
        "scores": _pairs_to_csr(out, X_test.shape[0], n_labels),
        "train_s": t2 - t1,
        "load_s": t1 - t0,
        "write_xc_s": write_s,
        "densify_s": densify_s,
        "predict_s": predict_s,
        **lat,
        "model_bytes": model_bytes,
        "n_trees": n_trees,
        "latency_threads": lat_threads,
        "hyper_param": hyper,
    }


def fit_predict_omikuji_parabel(
    X_train, Y_train, X_test, *, topk: int = 10, beam: int = 10, threads: int = 2, **options
) -> dict:
    """omikuji, Parabel-like (= omikuji's defaults): 3 trees, balanced 2-means, max_depth 20.

    omikuji trains from an XC-format text file: the matrices are written to a temporary file
    (``write_xc_s``, not in ``train_s``; pass ``xc_train_path=`` to reuse a file written by
    :func:`write_xc_file`). Parsing that file (``load_s``) is not in ``train_s`` either.
    Weights are densified with ``densify=0.1`` (the ``omikuji test`` CLI default
    ``--max_sparse_density 0.1``) before predicting; ``densify=None`` keeps them sparse.

    options: xc_train_path, densify, hyper_param (dict of overrides), n_latency.
    """
    return _omikuji_fit_predict(
        X_train, Y_train, X_test, topk=topk, beam=beam, threads=threads,
        hyper={}, options=options,
    )


def fit_predict_omikuji_bonsai(
    X_train, Y_train, X_test, *, topk: int = 10, beam: int = 10, threads: int = 2, **options
) -> dict:
    """omikuji, Bonsai-like: regular (unbalanced) k-means, cluster.k=100, max_depth=3.

    That is the omikuji README's documented setting for reproducing Bonsai ("unbalanced,
    cluster.k=100, max_depth=3"); everything else is omikuji's default (3 trees, hinge, C=1).
    Same I/O notes and options as :func:`fit_predict_omikuji_parabel`.
    """
    return _omikuji_fit_predict(
        X_train, Y_train, X_test, topk=topk, beam=beam, threads=threads,
        hyper={"cluster_k": 100, "cluster_balanced": False, "max_depth": 3},
        options=options,
    )


# --------------------------------------------------------------------------- napkinxc


def fit_predict_napkinxc_plt(
    X_train, Y_train, X_test, *, topk: int = 10, beam: int = 10, threads: int = 2, **options
) -> dict:
    """napkinXC PLT with its defaults, trained on the csr in memory.

    The default tree search is exact (uniform-cost) top-k search, so ``beam`` is only used when
    ``tree_search_type='beam'`` is passed (then ``beam_search_width=beam``). ``seed`` defaults
    to 0 (napkinXC's default is the clock). The model is written to a temporary directory at
    fit time (``PLT(output=...)``), which is counted in ``train_s`` (it cannot be separated).

    options: any ``napkinxc.models.PLT`` keyword (e.g. ``tree_search_type``, ``ensemble``),
    n_latency, predict_calls.
    """
    from napkinxc.models import PLT

    X_train = _csr32(X_train)
    X_test = _csr32(X_test)
    Y = _binary_csr(Y_train)
    n_labels = Y.shape[1]
    n_lat = min(int(options.pop("n_latency", N_LATENCY_ROWS)), X_test.shape[0])
    lat_threads = int(options.pop("latency_threads", 1))
    n_calls = int(options.pop("predict_calls", N_PREDICT_CALLS))
    plt_kwargs = {"seed": 0, "beam_search_width": beam, **options}
    # Labels as a list of lists of label ids (napkinXC's documented multi-label input).
    y_lists = [Y.indices[Y.indptr[i] : Y.indptr[i + 1]].tolist() for i in range(Y.shape[0])]

    tmpdir = tempfile.mkdtemp(prefix="peer_napkinxc_")
    try:
        model = PLT(os.path.join(tmpdir, "model"), threads=threads, **plt_kwargs)
        t0 = time.perf_counter()
        model.fit(X_train, y_lists)
        train_s = time.perf_counter() - t0
        del y_lists
        model_bytes = _path_bytes(os.path.join(tmpdir, "model"))

        pred = model.predict_proba(X_test, top_k=topk)
        predict_s = median_call_seconds(lambda: model.predict_proba(X_test, top_k=topk), n_calls)

        rows = [X_test[i : i + 1] for i in range(n_lat)]
        if lat_threads != threads:
            model.set_params(threads=lat_threads)
        lat = _latency_stats(lambda i: model.predict_proba(rows[i], top_k=topk), n_lat)
        del model
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    return {
        "scores": _pairs_to_csr(pred, X_test.shape[0], n_labels),
        "train_s": train_s,
        "predict_s": predict_s,
        "predict_calls": n_calls,
        **lat,
        "model_bytes": model_bytes,
        "plt_kwargs": plt_kwargs,
        "latency_threads": lat_threads,
    }
