"""sge_jax.load_encoder: a finished run's encoders encode new sequences exactly
as the run did, and every mistake is one line naming what is expected."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import sge_jax
from sge_jax.data import load_dataset
from sge_jax.encode import api
from sge_jax.errors import (CheckpointError, ConfigError, DataError,
                            WorkdirBusyError)
from tests.encode.conftest import LENGTH, NUM_JOINTS, assert_same_cages

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def encoder(finished_run):
  return sge_jax.load_encoder(finished_run.workdir)


def _raw_splits(finished_run):
  """The run's splits as its loader gives them (before normalisation)."""
  return load_dataset(finished_run.run.data).splits


@pytest.mark.slow
def test_encode_equals_the_runs_encodings(finished_run, encoder):
  saved = sge_jax.load_encodings(finished_run.workdir / 'encodings.npz')
  assert (encoder.num_joints, encoder.length) == (NUM_JOINTS, LENGTH)
  assert encoder.normalization == 'center'
  assert encoder.config_hash == saved.metadata.config_hash
  assert encoder.model_names == saved.metadata.model_names
  assert encoder.feature_dim == saved.encodings.shape[2] == 9 * 8
  for name, split in _raw_splits(finished_run).items():
    cages = encoder.encode(split.sequences, split=name)
    assert cages.dtype == np.float32
    assert cages.shape == (split.num_sequences, LENGTH, encoder.feature_dim)
    assert_same_cages(cages, saved.select(name).encodings, name)
  # float64 input is read as float32 first, as the loaders read files.
  train = _raw_splits(finished_run)['train'].sequences
  assert_same_cages(encoder.encode(train.astype(np.float64), split='train'),
                    saved.select('train').encodings)


def test_the_split_names_the_sorting_permutations_only(finished_run, encoder):
  train = _raw_splits(finished_run)['train'].sequences
  as_train = encoder.encode(train, split='train')
  as_data = encoder.encode(train)            # the default split, 'data'
  sorting = [i for i, name in enumerate(encoder.model_names)
             if name.startswith('sorting/')]
  k = finished_run.run.model.hidden
  columns = np.concatenate([np.arange(i * k, (i + 1) * k) for i in sorting])
  others = np.setdiff1d(np.arange(encoder.feature_dim), columns)
  np.testing.assert_array_equal(as_data[..., others], as_train[..., others])
  assert not np.array_equal(as_data[..., columns], as_train[..., columns])


def test_no_sequences_give_no_cages(encoder):
  empty = encoder.encode(np.zeros((0, LENGTH, NUM_JOINTS, 3), np.float32))
  assert empty.shape == (0, LENGTH, encoder.feature_dim)


def _with_nan():
  sequences = np.ones((2, LENGTH, NUM_JOINTS, 3), np.float32)
  sequences[1, 2, 3, 0] = np.nan
  return sequences


@pytest.mark.parametrize('sequences, message', [
    (np.ones((2, LENGTH, 18, 3), np.float32),
     r'sequences have J=18 joints .*trained on J=20: give \[N, f=6, J=20, 3\]'),
    (np.ones((2, 7, NUM_JOINTS, 3), np.float32),
     r'sequences have f=7 frames .*encodes f=6'),
    (np.ones((LENGTH, NUM_JOINTS, 3), np.float32),
     r'shape \(6, 20, 3\) \(3 dimensions\).*pass sequences\[None\]'),
    (np.ones((2, LENGTH, NUM_JOINTS, 2), np.float32),
     r'2 coordinates per joint'),
    (_with_nan(), r'1 NaN/Inf value\(s\), the first at \[sequence, frame, '
     r'joint, axis\] = \[1, 2, 3, 0\]'),
    (np.ones((2, LENGTH, NUM_JOINTS, 3), np.int64),
     r'sequences are int64, not floats.*divide by 1000'),
    ([np.ones((LENGTH, NUM_JOINTS, 3)), np.ones((2, 3))],
     r'cannot be read as one array'),
    (np.array(['a']), r'sequences are <U1, not floats'),
])
def test_bad_sequences_are_one_line_naming_what_is_expected(encoder, sequences,
                                                            message):
  with pytest.raises(DataError, match=message) as error:
    encoder.encode(sequences)
  assert '\n' not in str(error.value)


def test_bad_split_name_is_one_line(encoder):
  with pytest.raises(DataError, match="split=''"):
    encoder.encode(np.ones((1, LENGTH, NUM_JOINTS, 3), np.float32), split='')


def test_not_a_run_is_one_line(tmp_path):
  with pytest.raises(DataError, match='does not exist: give the workdir'):
    sge_jax.load_encoder(tmp_path / 'missing')
  (tmp_path / 'file').write_text('x')
  with pytest.raises(DataError, match='is not a directory'):
    sge_jax.load_encoder(tmp_path / 'file')
  with pytest.raises(DataError, match='is not the workdir of a run: it has no '
                     'config.json'):
    sge_jax.load_encoder(tmp_path)


def test_a_run_without_checkpoints_is_one_line(finished_run, tmp_path):
  shutil.copy(finished_run.workdir / 'config.json', tmp_path / 'config.json')
  with pytest.raises(DataError, match='No trained encoders in .*/checkpoints: '
                     'run the train stage'):
    sge_jax.load_encoder(tmp_path)
  (tmp_path / 'checkpoints' / '3').mkdir(parents=True)   # no metadata at all
  with pytest.raises(CheckpointError, match='cannot be read'):
    sge_jax.load_encoder(tmp_path)


def test_a_transfer_run_whose_source_is_gone_is_one_line(finished_run,
                                                         tmp_path):
  config = finished_run.config.copy_and_resolve_references()
  config.encoder_workdir = str(tmp_path / 'gone')
  (tmp_path / 'config.json').write_text(config.to_json())
  with pytest.raises(ConfigError, match='encoder_workdir=.*gone.* has no '
                     'config.json'):
    sge_jax.load_encoder(tmp_path)


def test_multi_seed_workdir_needs_a_seed_it_holds(finished_run, tmp_path):
  for seed in (0, 4):
    shutil.copytree(finished_run.workdir, tmp_path / f'seed_{seed}')
  with pytest.raises(DataError, match=r'multi-seed run \(seeds 0, 4\).*'
                     r'seed=0'):
    sge_jax.load_encoder(tmp_path)
  with pytest.raises(DataError, match='holds no seed 2; its seeds are 0, 4'):
    sge_jax.load_encoder(tmp_path, seed=2)
  encoder = sge_jax.load_encoder(tmp_path, seed=0)
  assert encoder.workdir == tmp_path / 'seed_0'
  # A single run is checked against the seed it was run with.
  with pytest.raises(DataError, match='a single run of seed 0, not seed 4'):
    sge_jax.load_encoder(finished_run.workdir, seed=4)


def _hold_lock(workdir, seconds):
  """Another process holding ``workdir``'s lock for ``seconds``, once it has
  printed 'held'."""
  holder = subprocess.Popen(
      [sys.executable, '-c', 'import fcntl, os, sys, time; '
       f'fd = os.open({str(workdir)!r}, os.O_RDONLY); '
       'fcntl.flock(fd, fcntl.LOCK_EX); print("held", flush=True); '
       f'time.sleep({seconds})'], stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == 'held'
  return holder


def test_a_run_still_training_is_named(finished_run, tmp_path, monkeypatch):
  workdir = tmp_path / 'run'
  shutil.copytree(finished_run.workdir, workdir)
  monkeypatch.setattr(api, 'LOCK_WAIT_S', 1.0)
  holder = _hold_lock(workdir, 60)
  try:
    with pytest.raises(WorkdirBusyError, match='in use by another run'):
      sge_jax.load_encoder(workdir)
  finally:
    holder.kill()
    holder.wait()
  sge_jax.load_encoder(workdir)    # free again


def test_a_lock_held_for_a_moment_is_waited_for(finished_run, tmp_path):
  """Another load_encoder (or encode command) holds the lock for its restore:
  two at once both load."""
  workdir = tmp_path / 'run'
  shutil.copytree(finished_run.workdir, workdir)
  holder = _hold_lock(workdir, 2)
  try:
    assert sge_jax.load_encoder(workdir).num_joints == NUM_JOINTS
  finally:
    holder.kill()
    holder.wait()


def test_import_stays_light_and_load_encodings_needs_no_jax():
  code = ('import sys, sge_jax; assert "jax" not in sys.modules; '
          'sge_jax.load_encodings; assert "jax" not in sys.modules; '
          'assert "load_encoder" in dir(sge_jax); print("ok")')
  completed = subprocess.run([sys.executable, '-c', code], cwd=REPO,
                             capture_output=True, text=True, timeout=60,
                             check=False)
  assert completed.stdout.strip() == 'ok', completed.stderr
  with pytest.raises(AttributeError, match='no attribute'):
    sge_jax.load_something_else    # pylint: disable=pointless-statement


def test_repr_says_what_the_encoder_reads(encoder):
  assert f'J={NUM_JOINTS}, f={LENGTH}, D=72' in repr(encoder)
  assert api.DEFAULT_SPLIT == 'data'
