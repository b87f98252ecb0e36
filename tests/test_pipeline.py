"""The job's train and encode stages on real-format data: exports, transfer, errors."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import sge_jax
from sge_jax import config as config_lib
from sge_jax import pipeline, reevaluation
from sge_jax.encode.encodings import load_encodings
from sge_jax.errors import (CheckpointMismatchError, ConfigError, DataError,
                            WorkdirBusyError, WorkdirError)
from tests.fixtures.pipeline import tiny_config, write_authors_dataset


def _authors_config(root, name, **overrides):
  config = tiny_config(**overrides)
  config.data.format = 'authors'
  config.data.root = str(root)
  config.data.name = name
  config.stages = 'train,encode'
  return config


@pytest.mark.slow
def test_j18_dataset_with_non_contiguous_ids_trains_and_exports(tmp_path):
  # With a recordings file (2 per person and split), so the evaluation also
  # scores walks.
  arrays = write_authors_dataset(tmp_path / 'Datasets', 'MYSET', 6, 18,
                                 people=[3, 17, 42], per_person=8,
                                 recordings_per_person=2)
  config = _authors_config(tmp_path / 'Datasets', 'MYSET',
                           **{'eval.plots': False})
  config.stages = 'train,encode,evaluate'
  results = pipeline.run(config, tmp_path / 'run')
  encodings = load_encodings(tmp_path / 'run' / 'encodings.npz')
  assert encodings.split_names == ['train', 'test']
  assert encodings.encodings.shape == (48, 6, 3 * 8)
  train = encodings.select('train')
  np.testing.assert_array_equal(train.labels, arrays['train'][1])
  np.testing.assert_allclose(train.sequences, arrays['train'][0], rtol=1e-6)
  assert np.isfinite(encodings.encodings).all()
  meta = encodings.metadata
  assert (meta.dataset, meta.length, meta.attention, meta.pretext) == (
      'MYSET', 6, 'LA', 'rev_rec')
  assert meta.model_names == ('rev_rec/x', 'rev_rec/y', 'rev_rec/z')
  assert len(meta.config_hash) == 16
  saved = json.loads((tmp_path / 'run' / 'config.json').read_text())
  assert saved['data']['name'] == 'MYSET'
  raw = np.load(tmp_path / 'run' / 'encodings.npz')
  assert {'encodings', 'labels', 'sequence_index', 'split', 'dataset', 'length',
          'attention', 'pretext', 'config_hash'} <= set(raw.files)
  # The recordings file reaches encodings.npz and the walk level.
  for split in ('train', 'test'):
    np.testing.assert_array_equal(encodings.select(split).recordings,
                                  arrays[split][2])
  entry = results['entries']['A/test/walks-vote']
  assert (entry['num_walks'], entry['num_sequences']) == (6, 24)
  assert results['entries']['B/test/walks-vote-vs-windows']['num_gallery'] == 24
  assert results['walks']['num_walks'] == {'train': 6, 'test': 6}


def test_level_walk_without_recordings_stops_before_any_work(tmp_path):
  write_authors_dataset(tmp_path / 'Datasets', 'MYSET', 6, 20, [1, 2], 8)
  config = _authors_config(tmp_path / 'Datasets', 'MYSET',
                           **{'eval.level': 'walk'})
  config.stages = 'train,encode,evaluate'
  with pytest.raises(DataError, match="config.eval.level='walk' needs the "
                     'recording of every test window.*split\\(s\\) test'):
    pipeline.run(config, tmp_path / 'run')
  assert not (tmp_path / 'run' / 'config.json').exists()
  assert not (tmp_path / 'run' / 'checkpoints').exists()


@pytest.mark.slow
def test_transfer_encodes_another_dataset_with_trained_encoders(tmp_path):
  write_authors_dataset(tmp_path / 'Datasets', 'SOURCE', 6, 20, [1, 2], 8)
  target = write_authors_dataset(tmp_path / 'Datasets', 'TARGET', 6, 20,
                                 [5, 6, 7], 8, seed=1)
  write_authors_dataset(tmp_path / 'Datasets', 'OTHERJ', 6, 25, [5, 6], 8, seed=2)
  pipeline.run(_authors_config(tmp_path / 'Datasets', 'SOURCE'), tmp_path / 'source')
  transfer = _authors_config(tmp_path / 'Datasets', 'TARGET',
                             **{'model.hidden': 32, 'eval.baselines': False})
  transfer.encoder_workdir = str(tmp_path / 'source')
  transfer.stages = 'train,encode,evaluate'
  results = pipeline.run(transfer, tmp_path / 'target')
  assert not (tmp_path / 'target' / 'checkpoints').exists()     # nothing trained
  # The record names the encoders that made the encodings, not this config's
  # model fields (k=32 here, k=8 in the source run).
  saved = json.loads((tmp_path / 'target' / 'config.json').read_text())
  assert saved['model']['hidden'] == 8
  assert saved['encoder_workdir'] == str(tmp_path / 'source')
  assert results['encodings']['hidden'] == 8
  assert results['encodings']['encoder_workdir'] == str(tmp_path / 'source')
  report = (tmp_path / 'target' / 'report.md').read_text()
  assert f'k = 8, trained in {tmp_path / "source"} (transfer)' in report
  encodings = load_encodings(tmp_path / 'target' / 'encodings.npz')
  assert encodings.metadata.dataset == 'TARGET'
  # They name the run whose encoders made them, by workdir and config hash.
  source_meta = load_encodings(tmp_path / 'source' / 'encodings.npz').metadata
  assert encodings.metadata.source_run == str(tmp_path / 'source')
  assert encodings.metadata.source_config_hash == source_meta.config_hash
  assert source_meta.source_run == source_meta.source_config_hash == ''
  assert encodings.metadata.normalization == 'none'
  assert encodings.metadata.sequence_units == 'metres, as given'
  # The API encodes with the encoders (and settings) the transfer run used.
  encoder = sge_jax.load_encoder(tmp_path / 'target')
  assert encoder.source == tmp_path / 'source'
  assert encoder.config_hash == encodings.metadata.config_hash
  np.testing.assert_array_equal(encoder.encode(target['test'][0], 'test'),
                                encodings.select('test').encodings)
  assert set(encodings.labels.tolist()) == {5, 6, 7}
  wrong_joints = _authors_config(tmp_path / 'Datasets', 'OTHERJ')
  wrong_joints.encoder_workdir = str(tmp_path / 'source')
  with pytest.raises(ConfigError, match='same joint count'):
    pipeline.run(wrong_joints, tmp_path / 'otherj')
  assert not (tmp_path / 'otherj' / 'config.json').exists()  # refused before
  assert (tmp_path / 'source' / 'checkpoints').exists()
  assert not list((tmp_path / 'source' / 'checkpoints').glob('damaged_*'))
  # The same transfer command again redoes its finished run (its saved model
  # section is the source's, not this config's: no difference).
  pipeline.run(transfer, tmp_path / 'target')
  # A source workdir whose config.json lost a section is named as damaged.
  source_config = json.loads((tmp_path / 'source' / 'config.json').read_text())
  del source_config['model']
  (tmp_path / 'source' / 'config.json').write_text(json.dumps(source_config))
  with pytest.raises(DataError, match='source/config.json is damaged.*model'):
    pipeline.run(transfer, tmp_path / 'target2')


@pytest.mark.slow
def test_workdir_refuses_encoders_of_another_config(tmp_path):
  config = tiny_config(**{'stages': 'train'})
  pipeline.run(config, tmp_path)
  longer = tiny_config(**{'stages': 'train', 'train.epochs': 3})
  pipeline.run(longer, tmp_path)                              # more epochs: resumes
  bigger = tiny_config(**{'stages': 'train', 'model.hidden': 16})
  with pytest.raises(ConfigError, match='model.hidden'):
    pipeline.run(bigger, tmp_path)


@pytest.mark.slow
def test_rev_rec_plus_exports_nine_models(tmp_path):
  config = tiny_config(**{'stages': 'train,encode', 'model.pretext': 'rev_rec_plus',
                          'train.epochs': 1})
  pipeline.run(config, tmp_path)
  encodings = load_encodings(tmp_path / 'encodings.npz')
  assert encodings.encodings.shape[-1] == 9 * 8
  assert encodings.metadata.model_names[3:6] == ('prediction/x', 'prediction/y',
                                                 'prediction/z')


def test_encode_without_trained_encoders_says_what_to_run(tmp_path):
  from sge_jax.errors import DataError
  with pytest.raises(DataError, match='run the train stage'):
    pipeline.run(tiny_config(**{'stages': 'encode'}), tmp_path)


def test_center_sequences_option_removes_each_windows_position(tmp_path):
  config = tiny_config(**{'stages': 'train,encode', 'train.epochs': 1,
                          'data.center_sequences': True})
  pipeline.run(config, tmp_path)
  sequences = load_encodings(tmp_path / 'encodings.npz').sequences
  np.testing.assert_allclose(sequences.mean(axis=(1, 2)), 0.0, atol=1e-5)
  assert np.abs(sequences).max() > 0.1


def test_sequence_cap_keeps_every_person_in_stored_order():
  from sge_jax.data.dataset import SkeletonDataset, SkeletonSplit, first_sequences
  labels = np.repeat([7, 3, 9], 10)
  sequences = np.arange(30, dtype=np.float32)[:, None, None, None] * np.ones(
      (30, 2, 1, 3), np.float32)
  dataset = SkeletonDataset('x', 2, {'train': SkeletonSplit(sequences, labels)})
  capped = first_sequences(dataset, 6).split('train')
  np.testing.assert_array_equal(capped.labels, [7, 7, 3, 3, 9, 9])
  np.testing.assert_array_equal(capped.sequences[:, 0, 0, 0], [0, 1, 10, 11, 20, 21])
  # A cap that is not a multiple of the number of people still keeps everyone.
  capped = first_sequences(dataset, 4).split('train')
  np.testing.assert_array_equal(capped.labels, [7, 7, 3, 9])
  np.testing.assert_array_equal(capped.sequences[:, 0, 0, 0], [0, 1, 10, 20])


@pytest.mark.slow
def test_encode_before_training_leaves_the_workdir_usable(tmp_path):
  write_authors_dataset(tmp_path / 'Datasets', 'MYSET', 6, 20, [1, 2], 8)
  encode_only = _authors_config(tmp_path / 'Datasets', 'MYSET')
  encode_only.stages = 'encode'
  with pytest.raises(DataError, match='No trained encoders'):
    pipeline.run(encode_only, tmp_path / 'run')
  assert not (tmp_path / 'run' / 'checkpoints').exists()
  assert not (tmp_path / 'run' / 'config.json').exists()    # refused before
  # Nothing was trained, so another encoder config may still train there.
  train = _authors_config(tmp_path / 'Datasets', 'MYSET', **{'model.hidden': 4})
  pipeline.run(train, tmp_path / 'run')
  assert (tmp_path / 'run' / 'encodings.npz').exists()


def test_too_few_sequences_names_the_split_the_encoders_train_on(tmp_path):
  write_authors_dataset(tmp_path / 'Datasets', 'MYSET', 6, 20, [1, 2], 3)
  config = _authors_config(tmp_path / 'Datasets', 'MYSET')
  with pytest.raises(DataError, match='The train split of .* has 6 sequences'):
    pipeline.run(config, tmp_path / 'run')


def _smoke_config(**overrides):
  config = tiny_config(**overrides)
  config.stages = 'train,encode'
  return config


def test_a_second_run_on_a_held_workdir_stops_at_once_naming_the_holder(tmp_path):
  workdir = tmp_path / 'run'
  holder = subprocess.Popen(
      [sys.executable, '-c', _HOLD_LOCK, str(workdir)], stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'held', holder.stderr.read()
    with pytest.raises(WorkdirBusyError, match=rf'PID {holder.pid}'):
      pipeline.run(_smoke_config(), workdir)
    with pytest.raises(WorkdirBusyError, match='the first run'):
      reevaluation.reevaluate(workdir)
  finally:
    holder.kill()
    holder.wait()
  assert not (workdir / 'config.json').exists()
  assert not (workdir / 'checkpoints').exists()


_HOLD_LOCK = """
import sys, time
from sge_jax.workdir.lock import hold_workdir_lock
with hold_workdir_lock(sys.argv[1], command='python launch.py (the first run)'):
  print('held', flush=True)
  time.sleep(120)
"""


def test_unusable_workdirs_are_refused_before_any_work(tmp_path):
  a_file = tmp_path / 'a_file'
  a_file.write_text('not a directory')
  for workdir in (a_file, a_file / 'below'):
    with pytest.raises(WorkdirError, match='a_file'):
      pipeline.run(_smoke_config(), workdir)


def test_a_rejected_run_writes_no_config(tmp_path):
  workdir = tmp_path / 'run'
  pipeline.run(_smoke_config(), workdir)
  (workdir / 'config.json').unlink()
  pipeline.run(_smoke_config(), workdir)              # rewrites it
  saved = (workdir / 'config.json').read_text()
  with pytest.raises(ConfigError, match='model.hidden'):
    pipeline.run(_smoke_config(**{'model.hidden': 16}), workdir)
  assert (workdir / 'config.json').read_text() == saved
  # A data error (no batch fits) comes before config.json too.
  fresh = tmp_path / 'fresh'
  too_big = _smoke_config()
  too_big.train.batch_size = 4096
  with pytest.raises(DataError, match='fewer than one batch'):
    pipeline.run(too_big, fresh)
  assert not (fresh / 'config.json').exists()


def test_a_run_refused_while_loading_data_leaves_no_new_workdir(tmp_path):
  for seeds in ('', '0,1'):
    too_big = _smoke_config(**{'seeds': seeds, 'train.batch_size': 4096})
    with pytest.raises(DataError, match='fewer than one batch'):
      pipeline.run(too_big, tmp_path / 'fresh')
    assert not (tmp_path / 'fresh').exists()
  # An existing workdir stays, even an empty one.
  (tmp_path / 'existing').mkdir()
  with pytest.raises(DataError, match='fewer than one batch'):
    pipeline.run(too_big, tmp_path / 'existing')
  assert (tmp_path / 'existing').is_dir()


def _without(section):
  def edit(saved):
    del saved[section]
  return edit


def _setting(field, value):
  def edit(saved):
    *sections, name = field.split('.')
    for part in sections:
      saved = saved[part]
    saved[name] = value
  return edit


@pytest.mark.parametrize('content', ['{"seed": 0, ', '[1, 2]', '\x00\xff'])
def test_a_corrupt_config_json_is_named(tmp_path, content):
  workdir = tmp_path / 'run'
  pipeline.run(_smoke_config(), workdir)
  (workdir / 'config.json').write_bytes(content.encode('latin-1'))
  for attempt in (lambda: pipeline.run(_smoke_config(), workdir),
                  lambda: reevaluation.reevaluate(workdir)):
    with pytest.raises(DataError, match='config.json'):
      attempt()


@pytest.fixture(scope='module')
def trained_run(tmp_path_factory):
  """A workdir after the train and encode stages (copied per test)."""
  workdir = tmp_path_factory.mktemp('trained') / 'run'
  pipeline.run(_smoke_config(), workdir)
  return workdir


@pytest.mark.parametrize('edit, named', [
    (_without('rn'), "no 'rn' field"),
    (_without('data'), "no 'data' field"),
    (_without('seed'), "no 'seed' field"),
    (_setting('rn', [1, 2]), 'its rn is'),
    (_setting('rn.epochs', 'x'), "its rn.epochs is 'x', not an integer"),
    (_setting('train.epochs', 1.5), 'its train.epochs is 1.5, not an integer'),
    (_setting('eval.baselines', 'yes'), 'not true or false'),
    (_setting('data.synthetic', 3), 'its data.synthetic is 3'),
])
def test_a_config_json_missing_a_section_is_named_as_damaged(
    tmp_path, trained_run, edit, named):
  workdir = tmp_path / 'run'
  shutil.copytree(trained_run, workdir)
  saved = json.loads((workdir / 'config.json').read_text())
  edit(saved)
  damaged = json.dumps(saved)
  (workdir / 'config.json').write_text(damaged)
  for attempt in (lambda: pipeline.run(_smoke_config(), workdir),
                  lambda: reevaluation.reevaluate(workdir)):
    with pytest.raises(DataError, match='config.json is damaged') as error:
      attempt()
    assert named in str(error.value)
    assert 'restore it, or use a new --workdir' in str(error.value)
  assert (workdir / 'config.json').read_text() == damaged   # kept as it was


def test_a_config_json_that_is_a_folder_is_named(tmp_path, trained_run):
  workdir = tmp_path / 'run'
  shutil.copytree(trained_run, workdir)
  (workdir / 'config.json').unlink()
  (workdir / 'config.json').mkdir()
  with pytest.raises(DataError, match='config.json is a directory, not a regular file'):
    pipeline.run(_smoke_config(), workdir)


def test_checkpoints_of_another_model_size_are_refused_without_config_json(
    tmp_path, trained_run):
  workdir = tmp_path / 'run'
  shutil.copytree(trained_run, workdir)
  (workdir / 'config.json').unlink()
  for stages in ('train,encode', 'encode'):
    with pytest.raises(CheckpointMismatchError,
                       match='another configuration.*use a new --workdir'):
      pipeline.run(_smoke_config(**{'model.hidden': 16, 'stages': stages}),
                   workdir)
    assert not (workdir / 'config.json').exists()
  assert not list((workdir / 'checkpoints').glob('damaged_*'))
  pipeline.run(_smoke_config(), workdir)        # the right size resumes
  assert (workdir / 'config.json').exists()


def test_a_multi_seed_workdir_is_not_reused_for_one_seed_or_fewer(tmp_path):
  workdir = tmp_path / 'run'
  for seed in (0, 1):
    (workdir / f'seed_{seed}').mkdir(parents=True)
  with pytest.raises(ConfigError, match=r'holds a multi-seed run .*'
                     r'--config\.seeds=0,1 to continue'):
    pipeline.run(_smoke_config(), workdir)
  with pytest.raises(ConfigError, match=r'leaves out 1.*--config\.seeds=0,1,2'):
    pipeline.run(_smoke_config(**{'seeds': '0,2'}), workdir)
  assert sorted(path.name for path in workdir.iterdir()) == [
      '.lock', 'seed_0', 'seed_1']                       # nothing written
  (workdir / 'seed_2').write_text('mine')
  with pytest.raises(WorkdirError, match='seed_2 is not a folder'):
    pipeline.run(_smoke_config(**{'seeds': '0,1,2'}), workdir)
  assert (workdir / 'seed_2').read_text() == 'mine'


def test_a_single_run_workdir_is_not_reused_for_several_seeds(tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  (workdir / 'config.json').write_text('{}')
  with pytest.raises(ConfigError, match=r'holds a single run \(config.json\).*'
                     'without --config.seeds'):
    pipeline.run(_smoke_config(**{'seeds': '0,1'}), workdir)
  assert not list(workdir.glob('seed_*'))


def test_a_finished_run_without_checkpoints_keeps_its_results(tmp_path):
  """Encoder fields are compared on a finished run even where its checkpoints
  are gone (nothing to resume: the job would train anew over its results)."""
  workdir = tmp_path / 'run'
  workdir.mkdir()
  config = config_lib.resolve_config(_smoke_config())
  (workdir / 'config.json').write_text(config.to_json())
  (workdir / 'results.json').write_text('{"kept": true}')
  with pytest.raises(ConfigError, match='other model.hidden.*new --workdir'):
    pipeline.run(_smoke_config(**{'model.hidden': 16}), workdir)
  assert (workdir / 'results.json').read_text() == '{"kept": true}'
  assert (workdir / 'config.json').read_text() == config.to_json()
