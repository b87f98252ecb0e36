"""Skeleton datasets: in-memory type, loaders and the synthetic demo set."""

from sge_jax.data.dataset import SkeletonDataset, SkeletonSplit
from sge_jax.data.windows import cut_windows
from sge_jax.data.authors_layout import load_authors_dataset
from sge_jax.data.authors_writer import write_authors_split
from sge_jax.data.loading import check_trainable, load_dataset, select_test_splits
from sge_jax.data.npz_format import load_npz_dataset, parse_value_set
from sge_jax.data.synthetic import make_synthetic_dataset
