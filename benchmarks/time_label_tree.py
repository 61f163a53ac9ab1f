"""Time the label-tree clustering (hierarchical_kmeans) on the PIFA of a bench_scale problem, with compact node copies
(the default) and without (LOCAL_BUDGET=0): same tree (leaf SHA-1), the seconds of each.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/time_label_tree.py 1000000

Arguments: N_LABELS [LOCAL_BUDGET ...]
"""
import hashlib
import json
import os
import sys
import time

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))
from bench_scale import preset_sizes  # noqa: E402
from xmc.datasets.sparse import make_sparse_problem  # noqa: E402
from xmc.indexing.label_repr import pifa  # noqa: E402
from xmc.indexing import kmeans  # noqa: E402

n = int(sys.argv[1])
budgets = [int(b) for b in sys.argv[2:]] or [kmeans.LOCAL_BUDGET, 0]
nt, nf = preset_sizes(n) if n in (100_000, 1_000_000, 3_000_000, 10_000_000) else (2 * n, 10 * n)
prob = make_sparse_problem(n_labels=n, n_train=nt, n_test=10, n_features=nf, seed=0)
Z = pifa(prob.X_train, prob.Y_train)
del prob
print(f"{n} labels: Z {Z.shape} nnz {Z.nnz} {Z.dtype}", flush=True)
kmeans.hierarchical_kmeans(Z[:5000], seed=0)  # warm-up (compile / cache load)
for b in budgets:
    kmeans.LOCAL_BUDGET = b
    t = time.perf_counter()
    chain = kmeans.hierarchical_kmeans(Z, seed=0)
    dt = time.perf_counter() - t
    h = hashlib.sha1(np.asarray(sp.csr_matrix(chain.matrices[-1]).indices).tobytes()).hexdigest()[:12]
    print(json.dumps({"labels": n, "budget": b, "seconds": round(dt, 1), "levels": chain.level_sizes, "leaf_sha1": h}), flush=True)
