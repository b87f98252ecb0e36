"""One finished tiny run, shared by the tests of the encoding API and command.

Trained on a generic skeleton .npz (so the command can encode the run's own
file again), with the rev_rec_plus pretext (every task, the sorting
permutations' split streams included) on centred sequences (so the run's
normalisation is exercised). About 15 seconds, once.
"""

import dataclasses
import pathlib

import numpy as np
import pytest

from sge_jax import pipeline
from tests.fixtures.pipeline import resolved_run, tiny_config

NUM_JOINTS = 20
LENGTH = 6
# CAGEs are context vectors A.H: attention weights summing to 1 times LSTM
# outputs in (-1, 1), so |C| < 1. Two encodings of the same sequences with the
# same weights differ at most by the rounding of another summation order
# (another program, batch or process): a few ulp per recurrent step, over f
# steps. 64 float32 ulp of 1 per step is far above that and far below any
# real difference.
CAGE_ATOL = 64 * LENGTH * float(np.finfo(np.float32).eps)


def assert_same_cages(actual, expected, err_msg=''):
  """``actual`` and ``expected`` [N, f, D] are the same CAGEs up to float32
  rounding (``CAGE_ATOL``), and of the same shape and dtype."""
  assert actual.shape == expected.shape and actual.dtype == expected.dtype
  np.testing.assert_allclose(actual, expected, rtol=0, atol=CAGE_ATOL,
                             err_msg=err_msg)


def write_walks(path, num_joints=NUM_JOINTS, people=(3, 5, 8, 13), trials=4,
                frames=40, seed=0, **extra):
  """A generic skeleton .npz: each person walks ``trials`` recordings of
  ``frames`` frames (a slow random walk about their own body, metres, away
  from the origin so that centring changes them); ``seq_trial`` is 1..trials.
  ``extra`` adds or, with None, drops fields."""
  rng = np.random.default_rng(seed)
  recordings, persons, trial_ids = [], [], []
  for person in people:
    body = rng.normal(scale=0.3, size=(num_joints, 3)) + [1.0, 0.5, 3.0]
    for trial in range(1, trials + 1):
      steps = rng.normal(scale=0.01, size=(frames, num_joints, 3))
      recordings.append(body + np.cumsum(steps, axis=0))
      persons.append(person)
      trial_ids.append(trial)
  lengths = [frames] * len(recordings)
  fields = dict(
      positions=np.concatenate(recordings).astype(np.float32),
      seq_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
      seq_person=np.asarray(persons, np.int64),
      seq_trial=np.asarray(trial_ids, np.int64))
  fields.update(extra)
  np.savez(path, **{k: v for k, v in fields.items() if v is not None})
  return pathlib.Path(path)


@dataclasses.dataclass(frozen=True)
class FinishedRun:
  workdir: pathlib.Path
  data: pathlib.Path       # the .npz the run was trained on
  config: object

  @property
  def run(self):
    return resolved_run(self.config)


@pytest.fixture(scope='package')
def finished_run(tmp_path_factory):
  root = tmp_path_factory.mktemp('finished_run')
  data = write_walks(root / 'walks.npz')
  config = tiny_config(**{'model.pretext': 'rev_rec_plus',
                          'data.normalization': 'center',
                          'stages': 'train,encode'})
  config.data.format = 'npz'
  config.data.path = str(data)
  config.data.name = 'walks'
  config.data.split_field = 'trial'
  config.data.train_values = '1-2'
  pipeline.run(config, root / 'run')
  return FinishedRun(root / 'run', data, config)
