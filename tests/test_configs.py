"""The config files: all load, keep the public field names, override what differs."""

import importlib
import pathlib

import pytest

from configs import default
from sge_jax import config as config_lib

CONFIG_NAMES = ['default', 'kgbd', 'biwi', 'ias', 'ks20', 'casia_b_cve',
                'casia_b_cme', 'demo', 'gist']
PUBLIC_FIELDS = ['seed', 'data.format', 'data.root', 'data.name', 'data.length',
                 'data.probe', 'data.view', 'data.path', 'model.attention',
                 'model.pretext', 'model.hidden', 'model.decoder_input',
                 'train.epochs', 'train.batch_size', 'train.learning_rate',
                 'train.temperature', 'rn.epochs', 'rn.manner', 'rn.selection']


def _load(name, arg=None):
  return importlib.import_module(f'configs.{name}').get_config(arg)


@pytest.mark.parametrize('name', CONFIG_NAMES)
@pytest.mark.parametrize('arg', [None, 'smoke'])
def test_every_config_loads_validates_and_has_the_public_fields(name, arg):
  config = _load(name, arg)
  config_lib.validate_config(config, num_devices=1)
  for field in PUBLIC_FIELDS:
    node = config
    for part in field.split('.'):
      node = node[part]


def test_dataset_configs_override_what_the_paper_says():
  assert _load('kgbd').train.temperature == 0.5
  assert _load('kgbd').train.epochs == 150 and _load('kgbd').rn.epochs == 200
  assert _load('biwi').train.temperature == 0.1
  assert _load('ks20').rn.epochs == 800
  cve = _load('casia_b_cve')
  assert (cve.train.temperature, cve.train.epochs, cve.rn.epochs) == (0.15, 100, 1000)
  assert (cve.rn.batch_size, cve.rn.learning_rate) == (1280, 5e-3)
  assert _load('casia_b_cme').data.length == 50
  assert _load('gist').data.path.endswith('gist_gait_normal.npz')
  assert default.get_config().train.learning_rate == 5e-4


def test_smoke_shrinks_and_unknown_arguments_fail():
  smoke = _load('kgbd', 'smoke')
  assert smoke.train.epochs < 5 and smoke.data.max_sequences > 0
  assert smoke.train.temperature == 0.5          # keeps the dataset's values
  with pytest.raises(ValueError, match='smoke'):
    _load('kgbd', 'fast')


def test_every_config_file_is_tested():
  files = {p.stem for p in pathlib.Path(default.__file__).parent.glob('*.py')}
  assert files - {'__init__'} == set(CONFIG_NAMES)
