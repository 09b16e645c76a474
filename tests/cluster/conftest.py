"""The multi-node tests' fixture (``local_cluster``: a real 3-node Ray cluster); see cluster_helpers."""
from cluster_helpers import local_cluster  # noqa: F401  (a module-scoped pytest fixture)
