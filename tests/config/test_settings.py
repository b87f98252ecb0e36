"""A config resolves once into frozen, typed settings (sge_jax.config.resolve):
every field lands in its settings, nothing can change them afterwards, and the
same config always gives the same settings."""

import dataclasses
import json
import pathlib

import ml_collections
import pytest

from sge_jax import config as config_lib
from sge_jax.config import settings as settings_lib
from sge_jax.errors import ConfigError

# A value other than the default for every field of base_config(), all valid
# together (seeds and the deprecated data.center_sequences are checked apart).
OTHER_VALUES = {
    'seed': 7,
    'stages': 'evaluate,encode',
    'encoder_workdir': 'runs/other',
    'procedure': 'released',
    'data.format': 'npz',
    'data.root': 'Elsewhere',
    'data.name': 'BIWI',
    'data.length': 8,
    'data.probe': 'Walking',
    'data.view': 'v1',
    'data.path': 'walks.npz',
    'data.split_field': 'view',
    'data.train_values': '1,3',
    'data.max_sequences': 5,
    'data.seed': 11,
    'data.normalization': 'root_joint',
    'data.synthetic.num_people': 2,
    'data.synthetic.recordings_per_person': 3,
    'data.synthetic.test_recordings_per_person': 4,
    'data.synthetic.frames_per_recording': 50,
    'model.attention': 'BA',
    'model.pretext': 'sorting',
    'model.hidden': 16,
    'model.num_layers': 3,
    'model.decoder_input': 'shifted_target',
    'model.contrastive_weight': 0.5,
    'train.epochs': 9,
    'train.batch_size': 4,
    'train.learning_rate': 0.01,
    'train.temperature': 0.3,
    'train.weight_decay': 0.0,
    'train.clip_value': 2.0,
    'train.early_stopping': 'paper',
    'train.shuffle_batches': True,
    'train.checkpoint_every_steps': 7,
    'train.keep_checkpoints': 2,
    'train.log_every_steps': 5,
    'train.parallel': 'data',
    'train.tensorboard': True,
    'rn.epochs': 12,
    'rn.manner': 'sc',
    'rn.selection': 'fixed',
    'rn.val_fraction': 0.2,
    'rn.batch_size': 64,
    'rn.learning_rate': 0.001,
    'rn.hidden': 16,
    'rn.epochs_per_call': 3,
    'rn.track_test': False,
    'eval.protocols': 'b,a',
    'eval.distance': 'cosine',
    'eval.baselines': False,
    'eval.baseline_k': 3,
    'eval.retrieval_features': 'mean',
    'eval.cmc_max_rank': 20,
    'eval.plots': False,
    'eval.level': 'window',
    'eval.walk_aggregation': 'mean',
    'eval.min_walk_windows': 3,
    # The released procedure turns every quirk on; two are set off here (R6
    # off keeps rn.selection as set).
    'quirks.select_on_test': False,
    'quirks.second_nearest': False,
}
APART = {'seeds', 'data.center_sequences'}


def _other_config():
  config = config_lib.get_config()
  for field, value in OTHER_VALUES.items():
    *sections, name = field.split('.')
    section = config
    for part in sections:
      section = section[part]
    section[name] = value
  return config


def _where(run, field):
  """Where ``field`` of the config lands in the run's settings."""
  renamed = {'stages': run.stages, 'data.seed': run.data.seed,
             'train.parallel': run.parallel.mode}
  if field in renamed:
    return renamed[field]
  value = run
  for part in field.split('.'):
    value = getattr(value, part)
  return value


def _expected(field, value):
  """The settings' form of ``value`` given to ``field``."""
  return {'stages': ('encode', 'evaluate'), 'data.probe': ('Walking',),
          'eval.protocols': ('A', 'B')}.get(field, value)


def test_every_field_lands_in_its_settings():
  fields = set(config_lib.flatten(config_lib.base_config().to_dict()))
  assert fields - APART == set(OTHER_VALUES) | {
      f'quirks.{f}' for f in config_lib.QUIRKS.values()}
  run = config_lib.resolve(_other_config(), num_devices=2).runs[0]
  for field, value in OTHER_VALUES.items():
    assert _where(run, field) == _expected(field, value), field
  for field in config_lib.QUIRKS.values():      # the rest follow 'released'
    assert getattr(run.quirks, field) == (
        field not in ('select_on_test', 'second_nearest')), field
  assert run.rn.fixed_shuffle and run.rn.seed == 7
  assert run.parallel == settings_lib.ParallelSettings(num_devices=2)
  assert not run.trains_here and run.transfer is None


def test_the_quirk_settings_are_the_quirk_fields():
  assert [f.name for f in dataclasses.fields(config_lib.QuirkSettings)] == list(
      config_lib.QUIRKS.values())


def test_the_record_is_the_resolved_config_and_its_hash():
  config = _other_config()
  run = config_lib.resolve(config, num_devices=1).runs[0]
  resolved = config_lib.resolve_config(config)
  assert run.record == resolved.to_json(indent=2)    # config.json's text
  assert run.config_hash == config_lib.config_hash(resolved)


def test_settings_are_frozen():
  run = config_lib.resolve(config_lib.get_config(), num_devices=1).runs[0]
  for settings in (run, run.data, run.data.synthetic, run.model, run.train,
                   run.quirks, run.rn, run.eval, run.parallel):
    for field in dataclasses.fields(settings):
      with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(settings, field.name, getattr(settings, field.name))
  assert isinstance(run.record, str) and isinstance(run.stages, tuple)


def test_resolving_twice_gives_equal_settings_and_leaves_the_config():
  config = _other_config()
  before = config.to_dict()
  first = config_lib.resolve(config, num_devices=2)
  assert first == config_lib.resolve(config, num_devices=2)
  assert hash(first) == hash(config_lib.resolve(config, num_devices=2))
  assert config.to_dict() == before


def test_every_seed_is_a_run_on_the_root_seeds_data():
  config = config_lib.get_config()
  config.seed, config.seeds = 5, '3-4'
  job = config_lib.resolve(config, num_devices=1)
  assert job.seeds == (3, 4) and job.multi_seed and job.seeds_field == '3-4'
  assert [(run.seed, run.data.seed, run.rn.seed) for run in job.runs] == [
      (3, 5, 3), (4, 5, 4)]
  records = [json.loads(run.record) for run in job.runs]
  assert [(record['seed'], record['seeds'], record['data']['seed'])
          for record in records] == [(3, '', 5), (4, '', 5)]
  single = config_lib.resolve(config_lib.get_config(), num_devices=1)
  assert single.seeds == (0,) and not single.multi_seed
  assert json.loads(single.runs[0].record)['data']['seed'] == -1  # as given


def test_a_bad_field_stops_the_resolution():
  config = config_lib.get_config()
  config.train.batch_size = 3
  with pytest.raises(ConfigError, match='train.batch_size'):
    config_lib.resolve(config, num_devices=2)


def test_a_saved_config_predating_fields_takes_their_defaults():
  saved = json.loads(config_lib.resolve_config(config_lib.get_config()).to_json())
  for section, field in (('data', 'normalization'), ('model', 'decoder_input'),
                         ('train', 'shuffle_batches'), ('rn', 'track_test')):
    del saved[section][field]
  del saved['quirks'], saved['procedure']
  saved['data']['center_sequences'] = True    # not resolved: as recorded
  run = config_lib.run_settings(ml_collections.ConfigDict(saved), 1)
  assert run.data.normalization == 'none'
  assert run.model.decoder_input == 'zeros'
  assert not run.train.shuffle_batches and run.rn.track_test
  assert run.quirks == config_lib.QuirkSettings() and run.procedure == 'clean'


def test_a_transfer_run_records_the_encoders_model():
  run = config_lib.resolve(config_lib.get_config(), num_devices=1).runs[0]
  encoder = config_lib.get_config()
  encoder.model.hidden, encoder.data.name, encoder.data.length = 64, 'IAS', 10
  encoder = ml_collections.ConfigDict(json.loads(encoder.to_json()))  # saved
  transfer = config_lib.transfer_settings(pathlib.Path('runs/ias'), encoder)
  assert (transfer.dataset, transfer.length, transfer.model.hidden) == (
      'IAS', 10, 64)
  moved = config_lib.with_transfer(run, transfer)
  assert moved.model == transfer.model and moved.transfer == transfer
  record = json.loads(moved.record)
  assert record['model']['hidden'] == 64 and record['data']['name'] == 'KGBD'
  expected = config_lib.resolve_config(config_lib.get_config())
  expected.model = encoder.model
  assert moved.config_hash == config_lib.config_hash(expected)
  assert moved.record == expected.to_json(indent=2)


@pytest.mark.parametrize('procedure, name, scored, ties', [
    ('released', 'KGBD', 'KGBD', 'last'), ('released', 'KGBD', 'IAS', 'first'),
    ('released', 'IAS', 'KGBD', 'last'), ('clean', 'KGBD', 'KGBD', 'first')])
def test_the_rn_scoring_the_data_follows_r6_on_that_data(procedure, name,
                                                        scored, ties):
  config = config_lib.get_config(procedure if procedure == 'released' else '')
  config.data.name = name
  run = config_lib.resolve(config, num_devices=1).runs[0]
  rn = config_lib.rn_settings_for(run, scored)
  assert rn.test_ties == ties
  assert rn == config_lib.RNSettings.from_config(
      config_lib.resolve_config(config), scored)


def test_a_saved_config_is_read_as_recorded_outside_rn_and_eval():
  # Re-evaluation reads a run's record: values a version of the job wrote
  # (or a hand edit) outside rn.* and eval.* are not refused again.
  saved = json.loads(config_lib.resolve_config(config_lib.get_config()).to_json())
  saved['stages'] = 'train,export,evaluate'
  saved['data']['format'] = 'csv'
  run = config_lib.run_settings(ml_collections.ConfigDict(saved), 1)
  assert run.stages == ('train', 'evaluate') and run.data.format == 'csv'
  saved['rn']['manner'] = 'avg'          # what the evaluation reads is checked
  with pytest.raises(ConfigError, match='rn.manner'):
    config_lib.run_settings(ml_collections.ConfigDict(saved), 1)


# ----------------------------------------------------------------- train.parallel


@pytest.mark.parametrize('seeds, requested, fields, mode', [
    ('', 'auto', {}, 'data'),
    ('7', 'auto', {}, 'data'),                   # one seed, in seed_7/
    ('0-3', 'auto', {}, 'seeds'),
    ('0-3', 'auto', {'encoder_workdir': 'runs/x'}, 'data'),
    ('0-3', 'data', {}, 'data'),
    ('0,5', 'seeds', {}, 'seeds'),
])
def test_train_parallel_resolves_once_for_the_whole_job(seeds, requested,
                                                       fields, mode):
  config = config_lib.get_config()
  config.seeds, config.train.parallel = seeds, requested
  config.update_from_flattened_dict(fields)
  job = config_lib.resolve(config, num_devices=2)
  expected = settings_lib.ParallelSettings(
      num_devices=2, mode=mode, automatic=mode == 'seeds' and requested == 'auto')
  assert all(run.parallel == expected for run in job.runs)


@pytest.mark.parametrize('seeds, requested, fields, message', [
    ('', 'seeds', {}, "'data' or 'auto' for one seed"),
    ('7', 'seeds', {}, "'data' or 'auto' for one seed"),
    ('0,1', 'seeds', {'encoder_workdir': 'runs/x'},
     "'data' or 'auto' with config.encoder_workdir"),
    ('0,1', 'both', {}, 'one of auto, data, seeds'),
])
def test_train_parallel_that_cannot_apply_is_refused(seeds, requested, fields,
                                                     message):
  config = config_lib.get_config()
  config.seeds, config.train.parallel = seeds, requested
  config.update_from_flattened_dict(fields)
  with pytest.raises(ConfigError) as refused:
    config_lib.resolve(config, num_devices=2)
  assert str(refused.value).startswith(
      f'config.train.parallel={requested!r} is invalid: expected {message}')
  assert str(refused.value).endswith('Override it with --config.train.parallel=...')


def test_only_data_parallel_training_needs_a_batch_the_devices_share():
  config = config_lib.get_config()
  config.seeds, config.train.batch_size = '0-2', 127
  for requested in ('auto', 'seeds'):      # each seed has its whole batch
    config.train.parallel = requested
    assert config_lib.resolve(config, num_devices=2).runs[0].parallel.mode == (
        'seeds')
  config.train.parallel = 'data'
  with pytest.raises(ConfigError, match='multiple of the 2 devices'):
    config_lib.resolve(config, num_devices=2)


def test_the_device_layout_changes_neither_the_encoders_nor_the_hash():
  runs = {}
  for requested in ('auto', 'data', 'seeds'):
    config = config_lib.get_config()
    config.seeds, config.train.parallel = '0,1', requested
    runs[requested] = config_lib.resolve(config, num_devices=2).runs[0]
  assert len({run.config_hash for run in runs.values()}) == 1
  records = {requested: ml_collections.ConfigDict(json.loads(run.record))
             for requested, run in runs.items()}
  assert records['seeds'].train.parallel == 'seeds'      # as given
  assert config_lib.encoder_differences(records['data'], records['seeds']) == []
  assert config_lib.result_differences(records['data'], records['seeds']) == []
