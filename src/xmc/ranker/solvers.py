"""Dual coordinate descent solvers for many small one-vs-all linear problems.

Written with numba rather than calling scikit-learn's liblinear because an
XR-Linear layer is thousands of tiny binary problems that all read rows of one
shared CSR matrix: liblinear (through ``LinearSVC``) would copy the row subset
for every problem, pay Python overhead per label and run them one at a time.
Here every problem of a layer is solved in parallel over one CSR matrix, and
the weights are sparsified as they are written out.

The algorithms are those of liblinear (Hsieh et al. 2008, "A dual coordinate
descent method for large-scale linear SVM", with shrinking; Yu, Huang and Lin
2011 for the logistic-regression dual), with ``Cp = Cn = C`` and a constant
bias feature appended to every instance.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

LOSS_SQUARED_HINGE = 0
LOSS_LOGISTIC = 1


# Written by hand because numba has no atomic operations: one LLVM ``atomicrmw add`` through
# numba's documented ``intrinsic`` extension API, for the shared problem counter of train_children.
@intrinsic
def _fetch_add(typingctx, counter, value):
    """Atomically add ``value`` to ``counter[0]`` (an int64 array); returns the value it had before."""
    if not (isinstance(counter, types.Array) and counter.dtype == types.int64 and isinstance(value, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        amount = context.cast(builder, args[1], signature.args[1], types.int64)
        return builder.atomic_rmw("add", array.data, amount, "monotonic")

    return types.int64(counter, value), codegen


@numba.njit(cache=True, inline="always")
def _xorshift(state):
    state ^= (state << np.uint64(13)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    state ^= state >> np.uint64(7)
    state ^= (state << np.uint64(17)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    return state


@numba.njit(cache=True)
def _shuffle(index, size, state):
    # Deterministic per-problem Fisher-Yates: the result must not depend on thread scheduling.
    for s in range(size - 1, 0, -1):
        state = _xorshift(state)
        j = np.int64(state % np.uint64(s + 1))
        tmp = index[s]
        index[s] = index[j]
        index[j] = tmp
    return state


# The loops over a row's non-zeros run on unsigned positions: with a signed ``k`` numba adds a
# negative-index wraparound to both ``indices[k]`` and ``data[k]`` (six instructions per non-zero
# in the solvers' innermost loops; 15% of the label layer's training time on EURLEX57K).
@numba.njit(cache=True, inline="always")
def _dot(w, indptr, indices, data, row, bias_index, bias):
    s = 0.0
    for k in range(np.uint64(indptr[row]), np.uint64(indptr[row + 1])):
        s += w[indices[k]] * data[k]
    return s + w[bias_index] * bias


@numba.njit(cache=True, inline="always")
def _axpy(a, w, indptr, indices, data, row, bias_index, bias):
    for k in range(np.uint64(indptr[row]), np.uint64(indptr[row + 1])):
        w[indices[k]] += a * data[k]
    w[bias_index] += a * bias


@numba.njit(cache=True, inline="always")
def _collect(w, f, feature_id, threshold, keep, kept_val, kept_bits, q):
    """Reset ``w[f]``; if it is kept (``|w[f]| > threshold``) pack it as (feature_id << 32 | float32
    bits) at ``keep[q]``. Returns the new count of kept weights."""
    if w[f] != 0.0:
        if abs(w[f]) > threshold:
            kept_val[q] = w[f]
            keep[q] = (np.uint64(feature_id) << np.uint64(32)) | np.uint64(kept_bits[q])
            q += 1
        w[f] = 0.0
    return q


@numba.njit(cache=True)
def solve_squared_hinge(w, rows, y, indptr, indices, data, sq_norms, bias, C, eps, max_iter, seed, alpha, index):
    """L2-regularised squared-hinge SVM, dual CD with shrinking; writes the solution into ``w``.

    Returns the number of passes made.
    """
    n = rows.shape[0]
    d = w.shape[0] - 1
    diag = 0.5 / C
    for s in range(n):
        alpha[s] = 0.0
        index[s] = s
    state = np.uint64(seed * 2654435761 + 1)
    active = n
    pg_max_old = np.inf
    pg_min_old = -np.inf
    it = 0
    while it < max_iter:
        pg_max = -np.inf
        pg_min = np.inf
        state = _shuffle(index, active, state)
        s = 0
        while s < active:
            i = index[s]
            r = rows[i]
            G = y[i] * _dot(w, indptr, indices, data, r, d, bias) - 1.0 + alpha[i] * diag
            PG = 0.0
            if alpha[i] == 0.0:
                if G > pg_max_old:
                    active -= 1
                    index[s] = index[active]
                    index[active] = i
                    continue
                elif G < 0.0:
                    PG = G
            else:
                PG = G
            pg_max = max(pg_max, PG)
            pg_min = min(pg_min, PG)
            if abs(PG) > 1e-12:
                old = alpha[i]
                alpha[i] = max(old - G / (sq_norms[r] + bias * bias + diag), 0.0)
                _axpy((alpha[i] - old) * y[i], w, indptr, indices, data, r, d, bias)
            s += 1
        it += 1
        if pg_max - pg_min <= eps:
            if active == n:
                break
            active = n
            pg_max_old = np.inf
            pg_min_old = -np.inf
            continue
        pg_max_old = pg_max if pg_max > 0.0 else np.inf
        pg_min_old = pg_min if pg_min < 0.0 else -np.inf
    return it


@numba.njit(cache=True)
def solve_logistic(w, rows, y, indptr, indices, data, sq_norms, bias, C, eps, max_iter, seed, alpha, index):
    """L2-regularised logistic regression, dual CD (liblinear's solve_l2r_lr_dual); writes into ``w``.

    ``alpha`` must have room for ``2 * len(rows)`` values. Returns the number of passes made.
    """
    n = rows.shape[0]
    d = w.shape[0] - 1
    start = min(0.001 * C, 1e-8)
    for s in range(n):
        alpha[2 * s] = start
        alpha[2 * s + 1] = C - start
        index[s] = s
        _axpy(y[s] * start, w, indptr, indices, data, rows[s], d, bias)
    inner_eps = 1e-2
    inner_eps_min = min(1e-8, eps)
    state = np.uint64(seed * 2654435761 + 1)
    it = 0
    while it < max_iter:
        it += 1
        state = _shuffle(index, n, state)
        newton_iters = 0
        g_max = 0.0
        for s in range(n):
            i = index[s]
            r = rows[i]
            a = sq_norms[r] + bias * bias
            b = y[i] * _dot(w, indptr, indices, data, r, d, bias)
            ind1 = 2 * i
            ind2 = 2 * i + 1
            sign = 1.0
            if 0.5 * a * (alpha[ind2] - alpha[ind1]) + b < 0.0:
                ind1 = 2 * i + 1
                ind2 = 2 * i
                sign = -1.0
            old = alpha[ind1]
            z = old
            if C - z < 0.5 * C:
                z = 0.1 * z
            gp = a * (z - old) + sign * b + math.log(z / (C - z))
            g_max = max(g_max, abs(gp))
            inner = 0
            while inner <= 100:
                if abs(gp) < inner_eps:
                    break
                gpp = a + C / (C - z) / z
                tmpz = z - gp / gpp
                z = z * 0.1 if tmpz <= 0.0 else tmpz
                gp = a * (z - old) + sign * b + math.log(z / (C - z))
                newton_iters += 1
                inner += 1
            if inner > 0:
                alpha[ind1] = z
                alpha[ind2] = C - z
                _axpy(sign * (z - old) * y[i], w, indptr, indices, data, r, d, bias)
        if g_max < eps:
            break
        if newton_iters <= n // 10:
            inner_eps = max(inner_eps_min, 0.1 * inner_eps)
    return it


@numba.njit(cache=True, parallel=True)
def train_children(
    indptr, indices, data, n_features, sq_norms, bias,
    child_ids, child_parent, neg_indptr, neg_indices, pos_indptr, pos_indices,
    loss, C, eps, max_iter, threshold, seed, n_threads, local_budget=4_000_000,
):
    """Train the one-vs-all problems of ``child_ids`` and return their sparsified weights.

    Child ``child_ids[t]`` is trained on the instance rows listed for its parent
    ``child_parent[t]`` in the negative-sampling matrix (CSC ``neg_*``: parent ->
    sorted instance rows); its positives are the sorted rows in its column of
    the CSC label matrix (``pos_*``). Weights with ``|w| <= threshold`` are dropped. ``n_threads``
    workers take the problems in order, each the next one not yet taken, so the result does not
    depend on which thread solves what (numba's thread count is read by the
    caller: reading it here would stop numba from caching the compiled code).
    Parents whose rows hold at most ``local_budget`` non-zeros are copied per thread with
    compact feature ids (``8 * local_budget`` bytes per thread at most).

    Returns a CSC triple (col_ptr, row_indices, values) of shape
    (n_features + 1, len(child_ids)), row ``n_features`` holding the bias weight, and
    the number of solver passes of every problem.
    """
    m = child_ids.shape[0]
    counts = np.zeros(m, dtype=np.int64)
    iters = np.zeros(m, dtype=np.int64)
    max_rows = 1
    max_local = 0
    for t in range(m):
        p = child_parent[t]
        max_rows = max(max_rows, neg_indptr[p + 1] - neg_indptr[p])
        nnz = 0
        for s in range(neg_indptr[p], neg_indptr[p + 1]):
            r = neg_indices[s]
            nnz += indptr[r + 1] - indptr[r]
        if nnz <= local_budget:
            max_local = max(max_local, nnz)
    # Each thread appends its problems' kept weights to its own buffer, packed as (feature << 32 |
    # float32 bits) so one in-place sort orders a problem's weights by feature: allocating the
    # arrays of every problem inside the parallel loop (argsort, fancy indexing, a list write)
    # made the label layer's many small problems slower on 2 threads than on 1.
    start = np.zeros(m, dtype=np.int64)
    owner = np.zeros(m, dtype=np.int64)
    buffers = [np.empty(1 << 16, dtype=np.uint64) for _ in range(n_threads)]
    used = np.zeros(n_threads, dtype=np.int64)
    next_problem = np.zeros(1, dtype=np.int64)
    for thread in numba.prange(n_threads):
        # One dense weight vector per thread, reset through the features the
        # problem touched, so a problem costs O(its nnz) and not O(n_features).
        # float32 as in PECOS: half the cache footprint; the solution is unchanged to
        # the solvers' tolerance (the updates are accumulated in float64).
        w = np.zeros(n_features + 1, dtype=np.float32)
        keep = np.empty(n_features + 1, dtype=np.uint64)
        kept_val = np.empty(n_features + 1, dtype=np.float32)
        kept_bits = kept_val.view(np.uint32)
        alpha = np.zeros(2 * max_rows, dtype=np.float64)
        index = np.zeros(max_rows, dtype=np.int64)
        y = np.zeros(max_rows, dtype=np.float64)
        # A parent's rows copied with features renumbered 0..u-1 in order of first use:
        # the weight vector of a small parent's children then fits in cache (random
        # access to a 200k-feature vector was most of the solver's time).
        fmap = np.full(n_features, -1, dtype=np.int32)
        fglob = np.empty(n_features, dtype=np.int32)
        loc_indptr = np.zeros(max_rows + 1, dtype=np.int64)
        loc_indices = np.empty(max_local, dtype=np.uint32)
        loc_data = np.empty(max_local, dtype=data.dtype)
        loc_sq = np.empty(max_rows, dtype=np.float64)
        loc_rows = np.arange(max_rows)
        loc_parent = -1
        u = 0
        # Each thread takes the next untrained problem (dynamic scheduling, as PECOS's OpenMP
        # loop): a fixed split left one thread idle at the end whenever the other was slower
        # (problem sizes vary, and on a shared machine so does each thread's share of a core).
        # Siblings are adjacent, so a thread meets each parent in one run and builds its copy once.
        while True:
            t = _fetch_add(next_problem, 1)
            if t >= m:
                break
            c = child_ids[t]
            p = child_parent[t]
            rows = neg_indices[neg_indptr[p]:neg_indptr[p + 1]]
            n = rows.shape[0]
            if n == 0:
                continue
            nnz = 0
            for s in range(n):
                nnz += indptr[rows[s] + 1] - indptr[rows[s]]
            local = max_local > 0 and nnz <= local_budget
            if local and p != loc_parent:
                for f in range(u):
                    fmap[fglob[f]] = -1
                u = 0
                q = 0
                for s in range(n):
                    r = rows[s]
                    for k in range(indptr[r], indptr[r + 1]):
                        f = indices[k]
                        if fmap[f] < 0:
                            fmap[f] = u
                            fglob[u] = f
                            u += 1
                        loc_indices[q] = fmap[f]
                        loc_data[q] = data[k]
                        q += 1
                    loc_indptr[s + 1] = q
                    loc_sq[s] = sq_norms[r]
                loc_parent = p
            pos = pos_indices[pos_indptr[c]:pos_indptr[c + 1]]
            j = 0
            for s in range(n):
                while j < pos.shape[0] and pos[j] < rows[s]:
                    j += 1
                y[s] = 1.0 if (j < pos.shape[0] and pos[j] == rows[s]) else -1.0
            q = 0
            if local:
                wl = w[:u + 1]  # the bias weight is the last entry
                if loss == LOSS_LOGISTIC:
                    iters[t] = solve_logistic(wl, loc_rows[:n], y, loc_indptr, loc_indices, loc_data, loc_sq, bias, C, eps, max_iter, seed + c, alpha, index)
                else:
                    iters[t] = solve_squared_hinge(wl, loc_rows[:n], y, loc_indptr, loc_indices, loc_data, loc_sq, bias, C, eps, max_iter, seed + c, alpha, index)
                for f in range(u):
                    q = _collect(wl, f, fglob[f], threshold, keep, kept_val, kept_bits, q)
                bias_w = wl[u]
                wl[u] = 0.0
            else:
                if loss == LOSS_LOGISTIC:
                    iters[t] = solve_logistic(w, rows, y, indptr, indices, data, sq_norms, bias, C, eps, max_iter, seed + c, alpha, index)
                else:
                    iters[t] = solve_squared_hinge(w, rows, y, indptr, indices, data, sq_norms, bias, C, eps, max_iter, seed + c, alpha, index)
                if nnz < n_features:  # collect (and reset) the weights through the rows' features
                    for s in range(n):
                        r = rows[s]
                        for k in range(np.uint64(indptr[r]), np.uint64(indptr[r + 1])):
                            q = _collect(w, indices[k], indices[k], threshold, keep, kept_val, kept_bits, q)
                else:  # the rows hold more non-zeros than there are features: one sequential scan is cheaper
                    for f in range(n_features):
                        q = _collect(w, f, f, threshold, keep, kept_val, kept_bits, q)
                bias_w = w[n_features]
                w[n_features] = 0.0
            if abs(bias_w) > threshold:
                kept_val[q] = bias_w
                keep[q] = (np.uint64(n_features) << np.uint64(32)) | np.uint64(kept_bits[q])
                q += 1
            keep[:q].sort()  # by feature id (the high bits; ids are distinct), in place
            at = used[thread]
            if at + q > buffers[thread].shape[0]:  # grow by doubling: rare, unlike one allocation per problem
                grown = np.empty(max(2 * buffers[thread].shape[0], at + q), dtype=np.uint64)
                grown[:at] = buffers[thread][:at]
                buffers[thread] = grown
            buffers[thread][at:at + q] = keep[:q]
            start[t] = at
            owner[t] = thread
            counts[t] = q
            used[thread] = at + q
    col_ptr = np.zeros(m + 1, dtype=np.int64)
    for t in range(m):
        col_ptr[t + 1] = col_ptr[t] + counts[t]
    row_ind = np.empty(col_ptr[m], dtype=np.int32)
    values = np.empty(col_ptr[m], dtype=np.float32)
    value_bits = values.view(np.uint32)
    low = np.uint64(0xFFFFFFFF)
    # (``src``, not ``buf``: a name also assigned inside the parallel loop would be shared by its threads)
    for t in range(m):
        src = buffers[owner[t]]
        for k in range(counts[t]):
            packed = src[start[t] + k]
            row_ind[col_ptr[t] + k] = np.int32(packed >> np.uint64(32))
            value_bits[col_ptr[t] + k] = np.uint32(packed & low)
    return col_ptr, row_ind, values, iters
