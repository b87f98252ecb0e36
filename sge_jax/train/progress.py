"""Progress lines of the train stage, for the console and the log file."""

from __future__ import annotations

from typing import Optional

import numpy as np

from sge_jax.progress import format_duration


SHORT_NAMES = {'reconstruction': 'rec', 'locality_attention': 'att',
               'contrastive': 'lcl', 'weight_decay': 'wd', 'total': 'total'}
LEGEND = ('losses are per step, summed over the models: rec = reconstruction, '
          'att = locality-aware attention, lcl = locality-aware contrastive, '
          'wd = weight decay, total = their sum')


def progress_line(epoch: int, epochs: int, step: int, total: int,
                  sums: dict[str, float], rate: Optional[float],
                  first_call_seconds: float) -> str:
  """One readable line; losses are summed over the stacked models.

  ``rate`` (steps/s) is None until a call without compilation has been timed:
  the first call's time is mostly compilation, so it gives no ETA.
  """
  losses = '  '.join(f'{SHORT_NAMES[name]} {value:.4g}'
                     for name, value in sums.items())
  if rate is None:
    timing = f'first call (compilation included) {first_call_seconds:.1f} s'
  else:
    timing = (f'{rate:.2f} steps/s  ETA '
              f'{format_duration((total - step) / max(rate, 1e-9))}')
  return (f'[train] epoch {epoch}/{epochs}  step {step}/{total} '
          f'({100 * step / total:.1f}%)  {losses}  | {timing}')


# A loss this many times its first step's value means training diverges.
DIVERGENCE_GROWTH = 100.0
# A loss term above this per sequence is far from anything a sane run gives
# (metres: the reconstruction term is ~10-100 per sequence): wrong units
# (millimetres), a far too small temperature, or divergence.
PER_SEQUENCE_LIMIT = 1e6


def divergence_warning(first: dict[str, np.ndarray],
                       metrics: dict[str, np.ndarray], names: list[str],
                       batch_size: int) -> Optional[str]:
  """A warning when the losses look diverged, else None.

  Args:
    first: term -> [M] the losses of the first step of this run.
    metrics: term -> [L, M] the losses of the steps of the last call.
    names: the M model names.
    batch_size: the global batch B.
  """
  for term, values in metrics.items():
    peak = values.max(axis=0)                                   # [M]
    grown = peak > DIVERGENCE_GROWTH * np.maximum(first[term], 1e-12)
    huge = peak / batch_size > PER_SEQUENCE_LIMIT
    for model in np.flatnonzero(grown | huge):
      how = (f'grew from {first[term][model]:.4g} to {peak[model]:.4g}'
             if grown[model] else f'reached {peak[model]:.4g} '
             f'({peak[model] / batch_size:.3g} per sequence)')
      return (f'the {term} loss of model {names[model]} {how}: training looks '
              'diverged. Lower --config.train.learning_rate, check '
              '--config.train.temperature, and check that the coordinates are '
              'in metres.')
  return None
