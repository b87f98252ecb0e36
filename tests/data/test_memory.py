"""Memory estimates and the refusal of runs that cannot fit (sge_jax.data.memory).

The estimates are lower bounds of what is certainly allocated; the model one
is checked against the real parameter count. Runs that cannot fit stop before
any work with one line: the estimate, the memory available, the way out.
"""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from sge_jax import pipeline
from sge_jax.data import memory
from sge_jax.config import get_config
from sge_jax.data import loading
from sge_jax.data.dataset import SkeletonDataset, SkeletonSplit
from sge_jax.data.npz_format import load_npz_dataset
from sge_jax.data.synthetic import dataset_bytes, make_synthetic_dataset
from sge_jax.errors import DataError
from sge_jax.train.setup import build_definition, initial_state
from tests.fixtures.pipeline import (resolved_run, tiny_config, tiny_run,
                                     write_authors_dataset)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GIB = 2**30


@pytest.fixture
def machine_of(monkeypatch):
  """Pretends the machine has ``gib`` GiB available (and no accelerator)."""
  def pretend(gib):
    monkeypatch.setattr(memory, 'available_bytes',
                        lambda: (int(gib * GIB), 'available on this machine'))
    monkeypatch.setattr(memory, 'accelerator_bytes', lambda: None)
  return pretend


def test_describe():
  assert memory.describe(3 * GIB) == '3 GiB'
  assert memory.describe(1.5 * 2**20) == '1.5 MiB'
  assert memory.describe(2048) == '2 KiB'
  assert memory.describe(12 * 2**40) == '12 TiB'


def test_available_memory_is_at_most_the_machine():
  available, where = memory.available_bytes()
  physical = os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
  assert 0 < available <= physical and where


def test_require_fits_is_one_line_with_estimate_memory_and_way_out():
  memory.require_fits(GIB, 'x', 'y', available=(2 * GIB, 'here'))
  with pytest.raises(DataError) as error:
    memory.require_fits(3 * GIB, 'Reading f.npz', 'Use less.',
                        available=(2 * GIB, 'available on this machine'))
  assert str(error.value) == (
      'Reading f.npz needs at least 3 GiB of memory (an estimate), more than '
      'the 2 GiB available on this machine. Use less.')


@pytest.mark.parametrize('joints, hidden, layers, length',
                         [(20, 256, 2, 6), (25, 128, 2, 10), (1000, 16, 3, 4)])
def test_the_parameter_estimate_is_the_real_count_within_5_percent(
    joints, hidden, layers, length):
  config = get_config()
  config.model.hidden, config.model.num_layers = hidden, layers
  run = resolved_run(config)
  definition = build_definition(run, joints)
  state = jax.eval_shape(lambda: initial_state(run, definition, length,
                                               joints))
  parameters = sum(np.prod(leaf.shape)
                   for leaf in jax.tree_util.tree_leaves(state.params))
  # Without activations (batch 0): 4 copies of 4-byte parameters.
  estimate = memory.training_bytes(len(definition.model_tasks), hidden, layers,
                                   joints, length, 0) / 16
  assert 0.95 * parameters <= estimate <= parameters  # a lower bound


def test_the_synthetic_estimate_is_twice_the_windows():
  dataset = make_synthetic_dataset(0, 10, num_people=3, recordings_per_person=2,
                                   test_recordings_per_person=1,
                                   frames_per_recording=60)
  made = sum(s.sequences.nbytes for s in dataset.splits.values())
  assert dataset_bytes(10, 3, 2, 1, 60) == 2 * made


def test_a_million_synthetic_people_are_refused_before_any_work(
    tmp_path, machine_of):
  machine_of(16)
  config = tiny_config(**{'data.synthetic.num_people': 10**6})
  with pytest.raises(DataError) as error:
    pipeline.run(config, tmp_path / 'run')
  assert str(error.value) == (
      'The synthetic set (1000000 people x 3 recordings x 60 frames) needs at '
      'least 48.3 GiB of memory (an estimate), more than the 16 GiB available '
      'on this machine. Use a smaller --config.data.synthetic.num_people (or '
      'recordings_per_person, test_recordings_per_person, '
      'frames_per_recording).')
  assert not (tmp_path / 'run' / 'config.json').exists()


def test_launch_refuses_a_synthetic_set_larger_than_any_machine(tmp_path):
  # 10^8 people: 43 TiB, more than any machine this runs on; exit 2 at once.
  completed = subprocess.run(
      [sys.executable, 'launch.py', '--config=configs/demo.py',
       f'--workdir={tmp_path / "run"}',
       '--config.data.synthetic.num_people=100000000'],
      capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
  assert completed.returncode == 2, completed.stderr[-2000:]
  assert 'Traceback' not in completed.stderr
  line, = [l for l in completed.stderr.splitlines() if l.startswith('error:')]
  assert 'The synthetic set (100000000 people' in line
  assert 'num_people' in line.split('. ')[-1]


def _dataset(num_joints, sequences=16, length=6):
  rng = np.random.default_rng(0)
  split = SkeletonSplit(
      rng.normal(size=(sequences, length, num_joints, 3)).astype(np.float32),
      np.repeat(np.arange(4), sequences // 4))
  return SkeletonDataset('many_joints', length, {'train': split, 'test': split})


def test_many_joints_are_refused_for_training_naming_the_sizes(machine_of):
  # J = 10^6 at k = 256: ~110 GiB of parameters and Adam state for 3 models.
  machine_of(64)
  config = get_config()
  dataset = _dataset(num_joints=10**6, sequences=4)
  with pytest.raises(DataError) as error:
    loading.check_memory(resolved_run(config), dataset, 'train', encode=False)
  message = str(error.value)
  assert message.startswith('Training (3 models, J=1000000, f=6, '
                            'model.hidden=256, 4 sequences) needs at least ')
  assert 'more than the 64 GiB available on this machine' in message
  assert 'smaller --config.model.hidden' in message and '\n' not in message
  # The same data without training: its encodings fit.
  loading.check_memory(resolved_run(config), dataset, None, encode=True)


def test_an_accelerator_is_compared_with_its_own_memory(monkeypatch):
  monkeypatch.setattr(memory, 'available_bytes',
                      lambda: (1000 * GIB, 'available on this machine'))
  monkeypatch.setattr(memory, 'accelerator_bytes',
                      lambda: (16 * GIB, 'of each NVIDIA H100'))
  with pytest.raises(DataError, match='more than the 16 GiB of each NVIDIA'):
    # J = 2 x 10^5: ~22 GiB of parameters and Adam state.
    loading.check_memory(resolved_run(get_config()),
                         _dataset(num_joints=2 * 10**5, sequences=4),
                         'train', encode=False)


def test_encodings_larger_than_memory_are_refused(machine_of):
  machine_of(0.05)
  config = get_config()
  # 4000 sequences x 6 frames x 768 features x 4 bytes x 2 = 141 MiB.
  with pytest.raises(DataError, match=r'^Encoding 8000 sequences .*'
                     r'--config.data.max_sequences'):
    loading.check_memory(resolved_run(config),
                         _dataset(num_joints=20, sequences=4000), None,
                         encode=True)


def test_the_tiny_and_demo_configs_fit_in_half_a_gib(machine_of):
  machine_of(0.5)
  for config in (tiny_config(), get_config()):
    dataset = make_synthetic_dataset(0, int(config.data.length))
    loading.check_memory(resolved_run(config), dataset, 'train', encode=True)


def test_an_authors_split_larger_than_memory_is_refused_unread(tmp_path,
                                                               machine_of):
  write_authors_dataset(tmp_path, 'KGBD', 6, 20, people=[1, 2], per_person=4)
  machine_of(10 / 1024 / 1024)   # 10 kB
  with pytest.raises(DataError) as error:
    loading.load_dataset(tiny_run(**{
        'data.format': 'authors', 'data.root': str(tmp_path),
        'data.name': 'KGBD', 'data.length': 6}).data)
  assert str(error.value).startswith(
      f'Reading the x/y/z files in {tmp_path / "KGBD" / "6" / "KGBD_train_npy_data"}'
      ' (2880 values) needs at least 22.5 KiB')


def test_an_npz_file_larger_than_memory_is_refused_unread(tmp_path, machine_of):
  np.savez(tmp_path / 'walks.npz', positions=np.zeros((100, 20, 3)),
           seq_offsets=np.array([0, 100]), seq_person=np.array([1]))
  machine_of(10 / 1024 / 1024)
  with pytest.raises(DataError, match=r'^Reading .*walks.npz needs at least '
                     r'70.3 KiB'):
    load_npz_dataset(tmp_path / 'walks.npz', 6)
