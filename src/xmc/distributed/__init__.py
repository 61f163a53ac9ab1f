"""XR-Linear across machines: label sub-trees trained as tasks on a Dask cluster, sharded batch prediction.

``plan`` splits one tree's training into tasks and assembles their results (numpy / scipy only);
``engine`` runs them on Dask (the optional extra ``xmc[distributed]``, imported only when used).
"""

from .engine import INSTALL_HINT, DaskEngine, connect

__all__ = ["DaskEngine", "connect", "INSTALL_HINT"]
