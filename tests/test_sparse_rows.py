import subprocess
import sys

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from xmc.sparse_rows import csr32, l2_normalize_rows, unsigned_indices


def test_hand_computed_rows_and_zero_row():
    M = sp.csr_matrix(np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, -2.0]]))
    got = l2_normalize_rows(M)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got.toarray(), [[0.6, 0.8, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, -1.0]], rtol=1e-6)


def test_matches_sklearn_with_duplicates_and_trailing_empty_rows_without_touching_input():
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 40, size=300)  # rows 40..49 stay empty, including the last ones
    cols = rng.integers(0, 30, size=300)  # repeated (row, col) pairs are duplicates to be summed
    M = sp.csr_matrix((rng.normal(size=300), (rows, cols)), shape=(50, 30))
    M.has_canonical_format = False
    before = M.copy()
    got = l2_normalize_rows(M, dtype=np.float64)
    np.testing.assert_allclose(got.toarray(), normalize(M.toarray()), rtol=1e-12, atol=1e-15)
    assert (M != before).nnz == 0


def test_dense_input():
    got = l2_normalize_rows(np.array([[1.0, 1.0], [0.0, 5.0]]))
    np.testing.assert_allclose(got.toarray(), [[2**-0.5, 2**-0.5], [0.0, 1.0]], rtol=1e-6)


def test_xr_linear_on_feature_matrices_does_not_import_sklearn():
    code = (
        "import sys, numpy as np, scipy.sparse as sp\n"
        "from xmc.models.xr_linear import XRLinear, XRLinearConfig\n"
        "X = sp.random(60, 20, density=0.3, format='csr', random_state=0, dtype=np.float32)\n"
        "Y = sp.csr_matrix((np.ones(60), (np.arange(60), np.arange(60) % 6)), shape=(60, 6))\n"
        "XRLinear(XRLinearConfig()).fit_matrix(X, Y, progress=False).predict(X, topk=3)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'pandas')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_in_place_on_request_only():
    M = sp.csr_matrix(np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32))
    same = l2_normalize_rows(M, copy=False)
    assert same.data is M.data or np.shares_memory(same.data, M.data)
    np.testing.assert_allclose(M.toarray(), [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)
    N = sp.csr_matrix(np.array([[3.0, 4.0]], dtype=np.float32))
    l2_normalize_rows(N)
    assert N.data.tolist() == [3.0, 4.0]


def test_unsigned_indices_share_int32_memory_and_convert_wider_ids():
    X = sp.random(50, 70_000, density=0.001, format="csr", random_state=0, dtype=np.float32)
    assert X.indices.dtype == np.int32
    ids = unsigned_indices(X)
    assert ids.dtype == np.uint32 and np.shares_memory(ids, X.indices)  # no copy of the matrix's ids
    assert np.array_equal(ids, X.indices)
    wide = X.copy()
    wide.indices = wide.indices.astype(np.int64)
    ids = unsigned_indices(wide)
    assert ids.dtype == np.uint32 and not np.shares_memory(ids, wide.indices) and np.array_equal(ids, X.indices)


def test_csr32_passes_a_kernel_ready_matrix_through_and_converts_the_rest():
    ready = sp.csr_matrix(np.array([[0.0, 1.5, 0.0], [2.0, 0.0, 3.0]], dtype=np.float32))
    assert csr32(ready) is ready  # no copy, no constructor: a served document's row
    # float64, unsorted columns (row 0 stores column 2 before column 0), and CSC: same matrix, float32, sorted
    unsorted = sp.csr_matrix((np.array([5.0, 7.0, 1.0]), np.array([2, 0, 1]), np.array([0, 2, 3])), shape=(2, 3))
    unsorted.has_sorted_indices = False
    before = unsorted.toarray()
    for M in (unsorted, sp.csc_matrix(unsorted), sp.csr_matrix(unsorted, dtype=np.float32)):
        got = csr32(M)
        assert got.format == "csr" and got.dtype == np.float32 and got is not M
        np.testing.assert_array_equal(got.indices, [0, 2, 1])
        np.testing.assert_array_equal(got.toarray(), before)
    np.testing.assert_array_equal(unsorted.indices, [2, 0, 1])  # the caller's matrix is left as it was


def test_drop_below_compares_stored_entries_only():
    """scores.multiply(scores >= t) built a dense (n, L) mask for t <= 0; the same result without it."""
    import warnings

    from xmc.sparse_rows import drop_below

    S = sp.csr_matrix(np.array([[0.0, 0.5, -0.2, 0.0], [0.9, 0.0, 0.0, -1.0]], dtype=np.float32))
    for t in (0.4, 0.0, -0.5, -2.0):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # scipy's SparseEfficiencyWarning
            got = drop_below(S, t)
        expected = np.where(S.toarray() >= t, S.toarray(), 0)
        np.testing.assert_array_equal(got.toarray(), expected)
        assert got.nnz == np.count_nonzero(expected)
    per_label = drop_below(S, np.array([0, 0.6, -0.3, 0]))
    np.testing.assert_array_equal(per_label.toarray(), np.array([[0, 0, -0.2, 0], [0.9, 0, 0, 0]], dtype=np.float32))
