"""Skeleton datasets: in-memory type, loaders and the synthetic demo set."""

from sge_jax.data.dataset import SkeletonDataset, SkeletonSplit
from sge_jax.data.windows import cut_windows
