"""The authors' early-stopping rule, per model (docs/method.md §5).

The validation loss of each model is its reconstruction loss on the first
training batch, computed at every epoch end. Host-side NumPy bookkeeping; it is
checkpointed with the train state.
"""

from __future__ import annotations

import dataclasses

import numpy as np

RULES = ('none', 'paper')
# The authors' plateau rule compares validation losses rounded to 5 decimals.
_PLATEAU_DECIMALS = 5


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
  """Per-model bookkeeping of the authors' plateau rule (docs/method.md §5).

  Attributes:
    history: [M, 4] the last four validation losses (NaN-padded, oldest first).
    plateaus: [M] plateaus counted so far.
    active: [M] models still training.
  """
  history: np.ndarray
  plateaus: np.ndarray
  active: np.ndarray

  @classmethod
  def start(cls, num_models: int) -> 'EarlyStopping':
    return cls(np.full((num_models, 4), np.nan, np.float64),
               np.zeros(num_models, np.int64), np.ones(num_models, bool))

  def as_tree(self) -> dict:
    return dataclasses.asdict(self)


def update_early_stopping(state: EarlyStopping, validation_losses: np.ndarray,
                          rule: str) -> EarlyStopping:
  """Adds one epoch's validation losses [M].

  ``paper``: when the last three losses agree to 5 decimals a plateau is
  counted; after a plateau, a model stops once its loss is >= the maximum of the
  three losses before it. ``none``: models never stop.
  """
  history = np.concatenate([state.history[:, 1:],
                            np.asarray(validation_losses, np.float64)[:, None]],
                           axis=1)
  if rule != 'paper':
    return EarlyStopping(history, state.plateaus, state.active)
  last_three = np.round(history[:, 1:], _PLATEAU_DECIMALS)
  flat = np.all(last_three == last_three[:, :1], axis=1)
  plateaus = state.plateaus + (flat & state.active)
  rising = history[:, 3] >= np.max(history[:, :3], axis=1)
  stop = (plateaus >= 1) & rising & ~np.isnan(history[:, 0])
  return EarlyStopping(history, plateaus, state.active & ~stop)
