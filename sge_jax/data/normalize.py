"""Normalising skeleton coordinates before training and encoding."""

from __future__ import annotations

import dataclasses

import numpy as np

from sge_jax.data.dataset import SkeletonDataset, SkeletonSplit


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
