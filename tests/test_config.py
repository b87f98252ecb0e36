"""Every bad config value is named in a clear error before any work starts."""

import json

import ml_collections
import pytest

from sge_jax.config import get_config
from sge_jax import config as config_lib
from sge_jax.errors import ConfigError


@pytest.mark.parametrize('field,value,message', [
    ('data.format', 'csv', 'one of authors, npz, synthetic'),
    ('data.length', 1, 'an integer >= 2'),
    ('model.attention', 'local', 'one of LA, BA'),
    ('model.pretext', 'reverse', 'rev_rec_plus'),
    ('model.decoder_input', 'teacher', 'shifted_target'),
    ('model.hidden', 0, 'an integer >= 1'),
    ('train.epochs', 0, 'an integer >= 1'),
    ('train.batch_size', 1, 'an integer >= 2'),
    ('train.learning_rate', -1.0, '> 0'),
    ('train.learning_rate', float('nan'), 'finite'),
    ('train.temperature', 0.0, '> 0'),
    ('train.early_stopping', 'auto', 'none, paper'),
    ('rn.manner', 'avg', 'ap, sc'),
    ('rn.selection', 'best', 'val, fixed, paper'),
    ('rn.epochs', 0, 'an integer >= 1'),
    ('rn.learning_rate', 0.0, '> 0'),
    ('eval.distance', 'manhattan', 'euclidean, cosine'),
    ('eval.protocols', 'A,C', 'A, B, CME'),
    ('eval.retrieval_features', 'max', 'concat'),
    ('eval.level', 'walks', 'window, walk, both'),
    ('eval.walk_aggregation', 'median', 'vote, mean'),
    ('eval.min_walk_windows', 0, 'an integer >= 1'),
])
def test_bad_values_name_the_field(field, value, message):
  config = get_config()
  config.update_from_flattened_dict({field: value})
  with pytest.raises(ConfigError, match=f'config.{field}=') as error:
    config_lib.validate_config(config, num_devices=1)
  assert message in str(error.value)
  assert f'--config.{field}=' in str(error.value)


def test_walk_level_needs_protocol_a_or_b():
  config = get_config()
  config.eval.level = 'walk'
  config.eval.protocols = 'CME'
  with pytest.raises(ConfigError, match='walks are scored by protocols A and B'):
    config_lib.validate_config(config, num_devices=1)
  config.eval.protocols = 'B,CME'
  config_lib.validate_config(config, num_devices=1)


def test_batch_must_split_over_devices():
  config = get_config()
  config.train.batch_size = 127
  with pytest.raises(ConfigError, match='multiple of the 2 devices'):
    config_lib.validate_config(config, num_devices=2)


def test_npz_format_needs_a_path():
  config = get_config()
  config.data.format = 'npz'
  with pytest.raises(ConfigError, match='data.path'):
    config_lib.validate_config(config, num_devices=1)


def test_stages_and_seeds_parse():
  assert config_lib.parse_stages('evaluate, train') == ['train', 'evaluate']
  with pytest.raises(ConfigError, match='stages'):
    config_lib.parse_stages('train,fit')
  config = get_config()
  assert config_lib.parse_seeds(config) == [0]
  config.seeds = '3, 1,2'
  assert config_lib.parse_seeds(config) == [3, 1, 2]
  config.seeds = '0-3,7'
  assert config_lib.parse_seeds(config) == [0, 1, 2, 3, 7]
  config.seeds = '1,x'
  with pytest.raises(ConfigError, match='comma-separated seeds'):
    config_lib.parse_seeds(config)
  config.seeds = '1,1'
  with pytest.raises(ConfigError, match='repeats'):
    config_lib.parse_seeds(config)


def test_defaults_are_valid():
  config_lib.validate_config(get_config(), num_devices=2)


def test_rev_rec_plus_fixes_its_attention():
  config = get_config()
  config.model.pretext = 'rev_rec_plus'
  config_lib.validate_config(config, 1)
  config.model.attention = 'BA'
  with pytest.raises(ConfigError, match='config.model.attention'):
    config_lib.validate_config(config, 1)


@pytest.mark.parametrize('field,value', [
    ('seed', -1), ('seed', 2**32), ('seed', 2**63 - 1), ('seed', 10**20),
    ('data.seed', -2), ('data.seed', 2**32),
    ('seeds', '0,4294967296'), ('seeds', '-1,0'), ('seeds', '0,1e20'),
    ('seeds', '5-3'), ('seeds', '0-4294967296'),
])
def test_seeds_that_would_alias_or_overflow_are_refused(field, value):
  # jax.random.key keeps 32 bits: 0 and 2**32 (or -1 and 2**63 - 1) would
  # train identical models; NumPy seed sequences take no negatives.
  config = get_config()
  config.update_from_flattened_dict({field: value})
  with pytest.raises(ConfigError, match=f'config.{field}=') as error:
    config_lib.validate_config(config, num_devices=1)
  assert '4294967295' in str(error.value)


def test_every_seed_in_range_is_accepted():
  config = get_config()
  config.update_from_flattened_dict({'seed': 2**32 - 1, 'data.seed': 0,
                                     'seeds': '0,4294967295'})
  config_lib.validate_config(config, num_devices=1)


@pytest.mark.parametrize('field, value, expected', [
    ('seed', 'abc', 'an integer'),
    ('train.epochs', 1.5, 'an integer'),
    ('rn.epochs', 'x', 'an integer'),
    ('rn.hidden', None, 'an integer'),
    ('eval.baselines', 'yes', 'true or false'),
    ('train.learning_rate', 'fast', 'a number'),
    ('quirks.extraction_batches', 1, 'true, false or None'),
    ('data.synthetic', 3, 'a section of fields'),
])
def test_a_value_of_the_wrong_type_names_the_field(field, value, expected):
  """A config not typed by ConfigDict (built from a dict, or read from JSON)."""
  tree = get_config().to_dict()
  *sections, name = field.split('.')
  section = tree
  for part in sections:
    section = section[part]
  section[name] = value
  with pytest.raises(ConfigError, match=f'config.{field}=') as error:
    config_lib.validate_config(ml_collections.ConfigDict(tree), num_devices=1)
  assert f'expected {expected}' in str(error.value)


def test_an_integer_may_stand_for_a_number_not_the_reverse():
  tree = get_config().to_dict()
  tree['train']['learning_rate'] = 1
  assert config_lib.mistyped_field(tree) is None
  tree['rn']['epochs'] = 300.0
  assert config_lib.mistyped_field(tree) == ('rn.epochs', 300.0, 'an integer')


def test_the_result_fields_of_an_old_config_are_the_defaults():
  """A config.json written before eval.level and the quirks existed reads as
  their defaults: rerunning it is no difference."""
  old = json.loads(get_config().to_json())
  for field in ('level', 'walk_aggregation', 'min_walk_windows'):
    del old['eval'][field]
  del old['quirks'], old['procedure']
  new = config_lib.resolve_config(get_config())
  assert config_lib.result_differences(ml_collections.ConfigDict(old), new) == []
  new.quirks.fixed_rn_shuffle = True
  new.rn.epochs = 5
  assert config_lib.result_differences(ml_collections.ConfigDict(old), new) == [
      'quirks.fixed_rn_shuffle', 'rn.epochs']
