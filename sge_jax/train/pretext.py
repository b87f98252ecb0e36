"""Pretext tasks: what each model reads and what it must reconstruct (docs/method.md §4).

Models are stacked on a leading axis, pretext-task major and axis minor: for
``rev_rec_plus`` model m = 3 * task + axis, i.e. rev_rec/x, rev_rec/y, rev_rec/z,
prediction/x, ..., sorting/z.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Optional

import numpy as np

from sge_jax import released
from sge_jax.config.fields import ATTENTION_TYPES, PRETEXTS
from sge_jax.config.settings import QuirkSettings
from sge_jax.train.losses import locality_mask

AXES = ('x', 'y', 'z')


@dataclasses.dataclass(frozen=True)
class PretextTask:
  """One pretext task trained on all three axes.

  Attributes:
    name: 'rev_rec', 'prediction' or 'sorting'.
    attention: 'LA' (locality-aware attention loss) or 'BA' (none).
    reversed_la_mask: quirk R9, the LA mask assumes a reversed target
      whatever the task.
    redrawn_sorting: quirk R10, sorting permutations per axis, and redrawn
      (another stream) when CAGEs are computed.
  """
  name: str
  attention: str
  reversed_la_mask: bool = False
  redrawn_sorting: bool = False

  @property
  def reversed_target(self) -> bool:
    return self.name == 'rev_rec'

  @property
  def mask_reversed(self) -> bool:
    """Whether the LA mask follows the anti-diagonal (docs/method.md §4; R9)."""
    return self.reversed_target or self.reversed_la_mask


def pretext_tasks(pretext: str, attention: str,
                  quirks: Optional[QuirkSettings] = None
                  ) -> tuple[PretextTask, ...]:
  """The tasks behind a ``model.pretext`` setting.

  ``rev_rec_plus`` is rev_rec with LA plus prediction and sorting with BA, as in
  the paper; the other settings are one task with the configured attention.
  ``quirks`` (the run's, optional: none on) switches R9 and R10 on.
  """
  quirks = quirks or QuirkSettings()
  flags = {'reversed_la_mask': quirks.reversed_la_mask,
           'redrawn_sorting': quirks.redrawn_sorting}
  if pretext not in PRETEXTS:
    raise ValueError(f'pretext must be one of {PRETEXTS}, got {pretext!r}')
  if attention not in ATTENTION_TYPES:
    raise ValueError(f'attention must be one of {ATTENTION_TYPES}, '
                     f'got {attention!r}')
  if pretext == 'rev_rec_plus':
    return (PretextTask('rev_rec', 'LA', **flags),
            PretextTask('prediction', 'BA', **flags),
            PretextTask('sorting', 'BA', **flags))
  return (PretextTask(pretext, attention, **flags),)


def model_names(tasks: tuple[PretextTask, ...]) -> list[str]:
  """Names of the stacked models, e.g. ['rev_rec/x', 'rev_rec/y', 'rev_rec/z']."""
  return [f'{task.name}/{axis}' for task in tasks for axis in AXES]


def sorting_permutations(num_sequences: int, length: int, seed: int,
                         stream: str) -> np.ndarray:
  """One seeded frame permutation per sequence, [N, f] int.

  ``stream`` (e.g. the split name) gives each split its own permutations from the
  same root seed.
  """
  rng = np.random.default_rng([seed, zlib.crc32(stream.encode())])
  return rng.permuted(np.tile(np.arange(length), (num_sequences, 1)), axis=1)


def task_inputs_and_targets(sequences: np.ndarray, task: PretextTask, seed: int,
                            stream: str) -> tuple[np.ndarray, np.ndarray]:
  """Encoder inputs and decoder targets of one task.

  Args:
    sequences: [N, f, J, 3] in stored order.
    task: the pretext task.
    seed: root seed (sorting permutations).
    stream: name that separates the permutations of different splits.

  Returns:
    (inputs, targets), each [N, f, J, 3]:
    rev_rec: (x, x reversed in time); prediction: (x_n, x_{n+1}), the last
    sequence targeting itself; sorting: (x with frames permuted, x), one
    permutation per sequence (R10: one per sequence and axis).
  """
  if task.name == 'rev_rec':
    return sequences, sequences[:, ::-1]
  if task.name == 'prediction':
    return sequences, np.concatenate([sequences[1:], sequences[-1:]], axis=0)
  if task.name == 'sorting' and task.redrawn_sorting:
    rng = np.random.default_rng([seed, zlib.crc32(stream.encode())])
    return released.permute_frames_per_axis(sequences, rng)[0], sequences
  if task.name == 'sorting':
    permutations = sorting_permutations(sequences.shape[0], sequences.shape[1],
                                        seed, stream)
    permuted = np.take_along_axis(
        sequences, permutations[:, :, None, None], axis=1)
    return permuted, sequences
  raise ValueError(f'unknown pretext task {task.name!r}')


def stacked_pretext_data(sequences: np.ndarray, tasks: tuple[PretextTask, ...],
                         seed: int, stream: str) -> dict[str, np.ndarray]:
  """Inputs and targets of every stacked model.

  Args:
    sequences: [N, f, J, 3].
    tasks: the pretext tasks.
    seed: root seed.
    stream: split name (separates sorting permutations per split).

  Returns:
    ``inputs`` and ``targets``, each [M, N, f, J] float32 with M = 3 * len(tasks),
    ordered as ``model_names(tasks)``.
  """
  inputs, targets = [], []
  for task in tasks:
    task_inputs, task_targets = task_inputs_and_targets(sequences, task, seed,
                                                        stream)
    inputs.append(np.moveaxis(task_inputs, -1, 0))
    targets.append(np.moveaxis(task_targets, -1, 0))
  return {
      'inputs': np.ascontiguousarray(np.concatenate(inputs), dtype=np.float32),
      'targets': np.ascontiguousarray(np.concatenate(targets), dtype=np.float32),
  }


def per_model_tasks(tasks: tuple[PretextTask, ...]) -> tuple[PretextTask, ...]:
  """The task of each stacked model: every task repeated for the x, y, z axes."""
  return tuple(task for task in tasks for _ in AXES)


def stacked_locality_masks(model_tasks: tuple[PretextTask, ...],
                           length: int) -> tuple[np.ndarray, np.ndarray]:
  """Locality masks [M, f, f] and attention-loss weights [M], one per model.

  Args:
    model_tasks: the task of each stacked model (see ``per_model_tasks``).
    length: f.

  BA models get weight 0 (no attention loss); LA models weight 1.
  """
  masks = [locality_mask(length, task.mask_reversed) for task in model_tasks]
  weights = [1.0 if task.attention == 'LA' else 0.0 for task in model_tasks]
  return np.stack(masks), np.asarray(weights, np.float32)
