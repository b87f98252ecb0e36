"""Normalising skeleton coordinates before training and encoding."""

from __future__ import annotations

import dataclasses

import numpy as np

from sge_jax.data.dataset import SkeletonDataset, SkeletonSplit
from sge_jax.released import normalize_to_root_joint


def center_sequences(dataset: SkeletonDataset) -> SkeletonDataset:
  """Every sequence minus its mean position over its frames and joints (per axis).

  Removes where a window was recorded (translation), keeping posture and motion.
  """

  def centred(split: SkeletonSplit) -> SkeletonSplit:
    mean = split.sequences.mean(axis=(1, 2), keepdims=True)
    return SkeletonSplit((split.sequences - mean).astype(np.float32), split.labels,
                         split.recordings)

  return dataclasses.replace(
      dataset, splits={name: centred(s) for name, s in dataset.splits.items()})


def subtract_root_joint(dataset: SkeletonDataset) -> SkeletonDataset:
  """Every frame minus its joint 0, per axis (the authors' CASIA-B ``--norm 1``,
  R8 in docs/released_procedure.md; not a quirk: the CASIA-B configs default to
  it in both procedures).

  Sequences [N, f, J, 3] become ``x - x[:, :, 0:1, :]``: joint 0 is 0 in every
  frame, the rest is relative to it.
  """

  def rooted(split: SkeletonSplit) -> SkeletonSplit:
    return SkeletonSplit(
        normalize_to_root_joint(split.sequences).astype(np.float32),
        split.labels, split.recordings)

  return dataclasses.replace(
      dataset, splits={name: rooted(s) for name, s in dataset.splits.items()})


NORMALIZERS = {'center': center_sequences, 'root_joint': subtract_root_joint}


def normalize(dataset: SkeletonDataset, normalization: str) -> SkeletonDataset:
  """Applies ``config.data.normalization``: 'none', 'root_joint' or 'center'."""
  if normalization == 'none':
    return dataset
  return NORMALIZERS[normalization](dataset)
