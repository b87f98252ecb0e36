"""TensorBoard scalars of the metrics log (config.train.tensorboard)."""

import os
import pathlib
import struct
import subprocess
import sys

import pytest

from sge_jax import config as config_lib
from sge_jax import workdir as workdir_lib
from sge_jax.errors import ConfigError
from sge_jax.workdir import tensorboard
from tests.fixtures.pipeline import tiny_config, tiny_dataset


def _events(directory):
  """{tag: [(step, value)]} of every scalar in the event files under
  ``directory`` (TFRecord frames: length u64, its CRC, the Event, its CRC)."""
  event_pb2 = pytest.importorskip('tensorboardX.proto.event_pb2')
  found = {}
  for path in sorted(directory.glob('events.out.tfevents.*')):
    data = path.read_bytes()
    position = 0
    while position < len(data):
      (length,) = struct.unpack('<Q', data[position:position + 8])
      event = event_pb2.Event.FromString(
          data[position + 12:position + 12 + length])
      position += 12 + length + 4
      for value in event.summary.value:
        found.setdefault(value.tag, []).append((event.step,
                                                value.simple_value))
  return found


def test_scalars_are_the_finite_numbers_of_a_record_one_tag_per_model():
  record = {'stage': 'train', 'step': 3, 'epoch': 1,
            'loss/total': {'rev_rec/x': 1.5, 'rev_rec/y': None},
            'steps_per_s': None, 'loss/total_all_models': 4.0,
            'active': {'rev_rec/x': True}, 'warning': 'text'}
  assert list(tensorboard.scalars(record)) == [
      ('loss/total/rev_rec/x', 1.5), ('loss/total_all_models', 4.0)]


def test_the_metrics_log_writes_event_files_beside_it(tmp_path):
  pytest.importorskip('tensorboardX')
  log = workdir_lib.MetricsLog(tmp_path / 'metrics.jsonl', tensorboard=True)
  log.write({'stage': 'train', 'step': 4, 'loss/total': {'rev_rec/x': 2.5}})
  log.write({'stage': 'train', 'step': 8, 'warning': 'diverged'})
  log.write({'stage': 'train', 'step': 8, 'loss/total': {'rev_rec/x': 1.25},
             'steps_per_s': float('nan')})
  assert _events(tmp_path / 'tensorboard') == {
      'loss/total/rev_rec/x': [(4, 2.5), (8, 1.25)]}
  assert len(log.path.read_text().splitlines()) == 3


class _Opened(Exception):
  """Stops training once its metrics log is made."""


def test_training_opens_its_metrics_log_with_the_field(tmp_path, monkeypatch):
  from sge_jax.train import train_encoders   # pylint: disable=import-outside-toplevel
  made = []

  def metrics_log(path, enabled=True, tensorboard=False):
    made.append((path, tensorboard))
    raise _Opened

  monkeypatch.setattr(workdir_lib, 'MetricsLog', metrics_log)
  for on in (True, False):
    config = tiny_config(**{'train.tensorboard': on})
    with pytest.raises(_Opened):
      # Settings made without validate_config: no writer library needed.
      run = config_lib.run_settings(config_lib.resolve_config(config), 1)
      train_encoders(run, tiny_dataset(tiny_config()), tmp_path)
  assert made == [(tmp_path / 'metrics.jsonl', True),
                  (tmp_path / 'metrics.jsonl', False)]


def test_off_by_default_and_outside_the_encoder_identity():
  config = tiny_config()
  assert config.train.tensorboard is False
  on = tiny_config(**{'train.tensorboard': True})
  assert config_lib.config_hash(on) == config_lib.config_hash(config)
  assert config_lib.encoder_differences(config, on) == []


def test_without_the_library_the_run_stops_before_any_work_naming_the_extra(
    monkeypatch, tmp_path):
  for name in [name for name in sys.modules if name.startswith('tensorboardX')
               ] or ['tensorboardX']:
    monkeypatch.setitem(sys.modules, name, None)      # importing it fails
  config = tiny_config(**{'train.tensorboard': True})
  with pytest.raises(ConfigError) as raised:
    config_lib.resolve(config, 1)
  assert str(raised.value) == tensorboard.MISSING_LIBRARY
  assert "pip install -e '.[tensorboard]'" in str(raised.value)
  with pytest.raises(ConfigError):
    workdir_lib.MetricsLog(tmp_path / 'metrics.jsonl', tensorboard=True)
  assert not (tmp_path / 'tensorboard').exists()
  config_lib.resolve(tiny_config(), 1)      # off: nothing is needed


def test_launch_without_the_library_is_one_line_with_exit_2(tmp_path):
  # launch.py as a user runs it, with tensorboardX made unimportable whether
  # or not this environment has it.
  repo = pathlib.Path(__file__).resolve().parents[2]
  program = ('import runpy, sys; sys.modules["tensorboardX"] = None; '
             f'sys.argv = ["launch.py"] + sys.argv[1:]; '
             f'runpy.run_path({str(repo / "launch.py")!r}, '
             'run_name="__main__")')
  workdir = tmp_path / 'run'
  completed = subprocess.run(
      [sys.executable, '-c', program, '--config=configs/demo.py:smoke',
       '--config.train.tensorboard=True', f'--workdir={workdir}'],
      capture_output=True, text=True, timeout=300, cwd=repo, check=False,
      env=dict(os.environ, PYTHONPATH=str(repo)))
  assert completed.returncode == 2, completed.stderr[-2000:]
  errors = [line for line in completed.stderr.splitlines()
            if line.startswith('error:')]
  assert errors == [f'error: {tensorboard.MISSING_LIBRARY}']
  assert 'Traceback' not in completed.stderr
  assert not workdir.exists()            # stopped before any work
