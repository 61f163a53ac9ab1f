"""Smoke run of the peer harness: every peer on bibtex and/or eurlex57k, one child process each.

    .venv/bin/python benchmarks/try_peers.py --dataset bibtex
    .venv/bin/python benchmarks/try_peers.py --dataset eurlex57k --json /tmp/eurlex_peers.json

bibtex: the XC repository's bag-of-words features as given. eurlex57k: train -> test with
``TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2, max_features=200000,
dtype=float32)`` on ``title + "\\n" + text`` (cached in --cache-dir). Readers are inline on
purpose (independent of xmc's own readers).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import measure  # noqa: E402
import peers  # noqa: E402

DATA = os.environ.get(
    "XMC_DATA",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data"),
)


# ------------------------------------------------------------------ data (inline readers)


def read_xc(path: str):
    """Extreme Classification Repository sparse format -> (X csr float32, Y csr float32)."""
    with open(path) as f:
        n, d, L = (int(t) for t in f.readline().split())
        xi, xd, xp, yi, yp = [], [], [0], [], [0]
        for line in f:
            line = line.rstrip("\n")
            if not line.strip() and len(xp) > n:
                continue
            head, _, rest = line.partition(" ")
            if head and ":" not in head:
                yi.extend(int(t) for t in head.split(","))
            elif head:  # no label field at all, first token is a feature
                rest = line
            for tok in rest.split():
                f_, v = tok.split(":")
                xi.append(int(f_))
                xd.append(float(v))
            xp.append(len(xi))
            yp.append(len(yi))
    X = sp.csr_matrix(
        (np.asarray(xd, np.float32), np.asarray(xi, np.int32), np.asarray(xp, np.int64)),
        shape=(n, d),
    )
    Y = sp.csr_matrix(
        (np.ones(len(yi), np.float32), np.asarray(yi, np.int32), np.asarray(yp, np.int64)),
        shape=(n, L),
    )
    X.sum_duplicates()
    Y.sum_duplicates()
    Y.data[:] = 1.0
    assert X.shape[0] == n == len(xp) - 1
    return X, Y


def l2_normalize_rows(X: sp.csr_matrix) -> sp.csr_matrix:
    X = sp.csr_matrix(X, dtype=np.float32, copy=True)
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1), dtype=np.float64).ravel())
    norms[norms == 0] = 1.0
    X.data /= np.repeat(norms, np.diff(X.indptr)).astype(np.float32)
    return X


def load_bibtex(normalize: bool = True):
    """bibtex's binary bag of words; rows l2-normalised by default (pecos does not normalise
    its input, omikuji and napkinXC do: without it pecos loses ~10 points of P@1)."""
    Xtr, Ytr = read_xc(os.path.join(DATA, "bibtex", "train_xc.txt"))
    Xte, Yte = read_xc(os.path.join(DATA, "bibtex", "test_xc.txt"))
    if normalize:
        Xtr, Xte = l2_normalize_rows(Xtr), l2_normalize_rows(Xte)
    return Xtr, Ytr, Xte, Yte


def _read_jsonl_gz(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _tfidf(train_texts: list[str], test_texts: list[str]):
    """(X_train, X_test): TF-IDF fitted on the training texts (word 1-2 grams, sublinear tf,
    min_df 2, at most 200,000 features), rows with sorted indices (PECOS refuses unsorted ones)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2, max_features=200000, dtype=np.float32)
    Xtr = vec.fit_transform(train_texts).tocsr()
    Xte = vec.transform(test_texts).tocsr()
    Xtr.sort_indices()
    Xte.sort_indices()
    return Xtr, Xte


def load_eurlex(cache_dir: str):
    cache = os.path.join(cache_dir, "eurlex57k_tfidf_1-2gram_200k.npz")
    if os.path.exists(cache):
        return measure.load_inputs(cache, names=("X_train", "Y_train", "X_test", "Y_test"))
    root = os.path.join(DATA, "eurlex57k")
    with open(os.path.join(root, "labels.txt"), encoding="utf-8") as f:
        L = sum(1 for _ in f)

    def split(name):
        texts, labels = [], []
        for d in _read_jsonl_gz(os.path.join(root, f"{name}.jsonl.gz")):
            texts.append((d.get("title") or "") + "\n" + (d.get("text") or ""))
            labels.append([int(x) for x in d.get("labels") or []])
        indptr = np.cumsum([0] + [len(l) for l in labels])
        ind = np.asarray([x for l in labels for x in l], dtype=np.int32)
        Y = sp.csr_matrix((np.ones(len(ind), np.float32), ind, indptr), shape=(len(labels), L))
        Y.sum_duplicates()
        Y.data[:] = 1.0
        return texts, Y

    t = time.perf_counter()
    tr_texts, Ytr = split("train")
    te_texts, Yte = split("test")
    Xtr, Xte = _tfidf(tr_texts, te_texts)
    print(f"[eurlex57k] tf-idf built in {time.perf_counter() - t:.1f}s: "
          f"X_train {Xtr.shape} nnz={Xtr.nnz}, X_test {Xte.shape} nnz={Xte.nnz}", flush=True)
    os.makedirs(cache_dir, exist_ok=True)
    measure.save_inputs(cache, Xtr, Ytr, Xte, Y_test=Yte)
    return Xtr, Ytr, Xte, Yte


def load_ave(name: str):
    """An ``ave-*`` product dataset as a plain XMC problem (no taxonomy): TF-IDF of title +
    description with EURLEX57K's settings (word 1-2 grams, sublinear tf, min_df 2), label columns
    of the training file (test labels unseen in train are dropped: this loader serves validation
    splits of train, and test rows only as a count)."""
    from xmc.data.readers import read_jsonl

    root = os.path.join(DATA, name)
    train = read_jsonl(os.path.join(root, "train.jsonl"))
    test = read_jsonl(os.path.join(root, "test.jsonl"), labels=train.labels)
    fields = ("title", "description")
    Xtr, Xte = _tfidf(train.input_texts(fields), test.input_texts(fields))
    n_labels = len(train.labels)
    return Xtr, sp.csr_matrix(train.Y), Xte, sp.csr_matrix(test.Y)[:, :n_labels]


# ------------------------------------------------------------------ metrics


def precision_at_k(scores: sp.csr_matrix, Y_true: sp.csr_matrix, ks=(1, 3, 5)) -> dict:
    """P@k over all test rows (rows without labels count as 0 hits, XC repository style)."""
    scores = sp.csr_matrix(scores)
    Y_true = sp.csr_matrix(Y_true)
    kmax = max(ks)
    n = scores.shape[0]
    hits = np.zeros((n, kmax), dtype=np.float64)
    for i in range(n):
        a, b = scores.indptr[i], scores.indptr[i + 1]
        if a == b:
            continue
        order = np.argsort(-scores.data[a:b], kind="stable")[:kmax]
        pred = scores.indices[a:b][order]
        truth = Y_true.indices[Y_true.indptr[i] : Y_true.indptr[i + 1]]
        hits[i, : len(pred)] = np.isin(pred, truth)
    cum = np.cumsum(hits, axis=1)
    return {f"P@{k}": float(cum[:, k - 1].sum() / (n * k)) for k in ks}


# ------------------------------------------------------------------ main


def run_dataset(name, Xtr, Ytr, Xte, Yte, args, tmpdir) -> list[dict]:
    print(f"\n=== {name}: train {Xtr.shape} nnz={Xtr.nnz}  test {Xte.shape} nnz={Xte.nnz}  "
          f"labels {Ytr.shape[1]}", flush=True)
    args_path = measure.save_inputs(os.path.join(tmpdir, f"{name}_inputs.npz"), Xtr, Ytr, Xte)
    xc_path = None
    rows = []
    for peer in args.peers:
        kwargs = dict(topk=args.topk, beam=args.beam, threads=args.threads)
        if peer.startswith("omikuji"):
            if xc_path is None:  # written once, shared by both omikuji settings
                xc_path = os.path.join(tmpdir, f"{name}_train_xc.txt")
                t = time.perf_counter()
                peers.write_xc_file(xc_path, Xtr, Ytr)
                print(f"[{name}] wrote XC train file for omikuji in "
                      f"{time.perf_counter() - t:.1f}s ({os.path.getsize(xc_path) / 2**20:.0f} MiB)",
                      flush=True)
            kwargs["xc_train_path"] = xc_path
        print(f"[{name}] {peer} ...", flush=True)
        log_path = None if args.verbose else os.path.join(tmpdir, f"{name}_{peer}.log")
        res = measure.run_in_subprocess(
            peer, args_path, timeout=args.timeout, log_path=log_path, **kwargs
        )
        row = {"dataset": name, "peer": peer}
        if "error" in res:
            row["error"] = res["error"]
            tail = ""
            if log_path and os.path.exists(log_path):
                with open(log_path, errors="replace") as f:
                    tail = f.read()[-3000:]
            print(f"[{name}] {peer} FAILED: {res['error']}\n{res.get('traceback', '')}\n"
                  f"--- child output (tail) ---\n{tail}", flush=True)
        else:
            row.update(precision_at_k(res["scores"], Yte))
            row.update({k: v for k, v in res.items() if k != "scores"})
            print(f"[{name}] {peer} done: " + measure.summary(row), flush=True)
        rows.append(row)
    return rows


def print_table(rows):
    cols = [("dataset", "%-10s"), ("peer", "%-16s"), ("P@1", "%6.4f"), ("P@3", "%6.4f"),
            ("P@5", "%6.4f"), ("train_s", "%8.1f"), ("predict_s", "%9.2f"),
            ("latency_ms_p50", "%8.3f"), ("peak_rss_mb", "%8.0f"), ("model_rss_mb", "%8.0f"),
            ("model_bytes", "%10.0f")]
    heads = ["dataset", "peer", "P@1", "P@3", "P@5", "train_s", "predict_s", "lat_p50ms",
             "peakRSS", "modelRSS", "model_MB"]
    print()
    print(" | ".join(heads))
    for r in rows:
        if "error" in r:
            print(f"{r['dataset']:<10s} | {r['peer']:<16s} | ERROR: {r['error']}")
            continue
        cells = []
        for (k, fmt) in cols:
            v = r.get(k)
            if k == "model_bytes" and v is not None:
                v = v / 2**20
            cells.append("-" if v is None else fmt % v)
        print(" | ".join(cells))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", choices=["bibtex", "eurlex57k", "both"], default="bibtex")
    ap.add_argument("--peers", nargs="+", default=list(peers.PEERS), choices=list(peers.PEERS))
    ap.add_argument("--topk", type=int, default=10)
    ap.add_argument("--beam", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=1800.0, help="per peer, seconds")
    ap.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "xmc_peer_cache"))
    ap.add_argument("--json", default=None, help="write all results (no scores) here")
    ap.add_argument("--verbose", action="store_true", help="show the peers' own output")
    ap.add_argument("--raw-bibtex", action="store_true",
                    help="do not l2-normalise bibtex's rows (pecos suffers)")
    args = ap.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory(prefix="try_peers_") as tmpdir:
        if args.dataset in ("bibtex", "both"):
            rows += run_dataset("bibtex", *load_bibtex(not args.raw_bibtex), args, tmpdir)
        if args.dataset in ("eurlex57k", "both"):
            rows += run_dataset("eurlex57k", *load_eurlex(args.cache_dir), args, tmpdir)
    print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1, default=str)


if __name__ == "__main__":
    main()
