"""Warnings about coordinates that are probably not in metres.

sge-jax expects joint positions in metres, as Kinect and the authors' files give
them. Integer arrays (millimetres or centimetres, typically) or splits whose
body sizes differ by an order of magnitude (one split converted, the other not)
train without error but give chance-level results, so they are flagged here.
"""

from __future__ import annotations

import numpy as np

from sge_jax.data.dataset import SkeletonDataset

# A person's joints spread about 0.2-0.6 m around their centre; a median spread
# above this is far outside what metres give.
MAX_METRE_SPREAD = 5.0
# Splits whose median spreads differ by more than this factor use other units.
MAX_SPREAD_RATIO = 10.0


def integer_coordinates_warning(source: str, dtype: np.dtype) -> str:
  """The warning for a file whose coordinates are stored as integers."""
  return (f'{source} holds integer coordinates ({dtype}); sge-jax expects '
          'metres as floats. If they are millimetres or centimetres, convert '
          'them to metres first (results are near chance otherwise).')


def body_spread(sequences: np.ndarray) -> float:
  """Median over sequences [N, f, J, 3] of the RMS distance (m) of the joints
  from the sequence's mean position; 0 for no sequences."""
  if sequences.shape[0] == 0:
    return 0.0
  centred = sequences - sequences.mean(axis=(1, 2), keepdims=True)
  return float(np.median(np.sqrt((centred ** 2).sum(-1).mean(axis=(1, 2)))))


def unit_warnings(dataset: SkeletonDataset) -> list[str]:
  """Warnings when a split's body size is not metre-like, or splits disagree."""
  spreads = {name: body_spread(split.sequences)
             for name, split in dataset.splits.items()}
  warnings = [
      f'split {name} of {dataset.name}: joints spread {spread:.3g} units around '
      'the body centre, far more than metres give (~0.3); are the coordinates '
      'in millimetres or centimetres? Convert them to metres.'
      for name, spread in spreads.items() if spread > MAX_METRE_SPREAD]
  present = {name: s for name, s in spreads.items() if s > 0}
  if len(present) >= 2:
    low, high = min(present, key=present.get), max(present, key=present.get)
    if present[high] > MAX_SPREAD_RATIO * present[low]:
      warnings.append(
          f'splits of {dataset.name} differ in scale: body spread '
          f'{present[high]:.3g} in {high} vs {present[low]:.3g} in {low} '
          f'(more than {MAX_SPREAD_RATIO:g}x); are they in the same units? '
          'sge-jax expects metres everywhere.')
  return warnings
