"""launch.py as a user runs it: the demo end to end, clear errors, multi-seed, real data."""

import json
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys

import numpy as np
import pytest

from sge_jax import pipeline
from sge_jax.errors import ConfigError
from tests.fixtures.pipeline import tiny_config

REPO = pathlib.Path(__file__).resolve().parents[1]
BAD_CONFIG_SYNTAX = 'def get_config(arg=None:\n'
NO_GET_CONFIG = 'x = 1\n'
# A float where the base config has an integer (ConfigDict refuses it).
MISTYPED_CONFIG = """from sge_jax.config import get_config as base

def get_config(arg=None):
  config = base('smoke')
  config.train.epochs = 1.5
  return config
"""
# A config built as a plain dict, so nothing typed it.
UNTYPED_CONFIG = """import ml_collections
from sge_jax.config import get_config as base

def get_config(arg=None):
  config = base('smoke').to_dict()
  config['seed'] = 'abc'
  return ml_collections.ConfigDict(config)
"""
GIST = REPO.parent / 'shared' / 'data' / 'real_kinect_gait' / 'gist_gait_normal.npz'


def _launch(*args, timeout=600):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  return subprocess.run([sys.executable, str(REPO / 'launch.py'), *args],
                        capture_output=True, text=True, timeout=timeout, env=env,
                        cwd=REPO)


def test_bad_config_value_is_one_clear_line(tmp_path):
  run = _launch('--config=configs/demo.py:smoke', f'--workdir={tmp_path}',
                '--config.train.temperature=-1')
  assert run.returncode == 2
  assert 'error: config.train.temperature=-1' in run.stderr
  assert 'Traceback' not in run.stderr
  assert not (tmp_path / 'checkpoints').exists()


@pytest.mark.parametrize('arguments, message', [
    (['--config=configs/demo.py:smoke', '--config.train.epoch=3'],
     "unknown config field 'epoch' (did you mean 'epochs'?)"),
    (['--config=configs/demo.py:smok'], "unknown config variant 'smok'"),
    (['--config=configs/nope.py'], 'no config file at configs/nope.py'),
    (['--config={bad}'], 'does not parse'),
    (['--config={empty}'], 'has no get_config'),
    (['--config=configs/demo.py:smoke', '--config.train.epochs=many'], 'many'),
    (['--config=configs/demo.py:smoke', '--config.train.epochs=1.5'],
     "config.train.epochs='1.5' is invalid: expected an integer"),
    (['--config=configs/demo.py:smoke', '--config.seed=abc'],
     "config.seed='abc' is invalid: expected an integer"),
    (['--config=configs/demo.py:smoke', '--config.rn.learning_rate=fast'],
     "config.rn.learning_rate='fast' is invalid: expected a number"),
    (['--config={mistyped}'],
     "mistyped.py (line 5) fails: it sets field 'epochs' to 1.5 (float)"),
    (['--config={untyped}'], "config.seed='abc' is invalid: expected an integer"),
    (['--config=configs/demo.py:smoke', '--config.train.parallel=seeds'],
     "config.train.parallel='seeds' is invalid: expected 'data' or 'auto' for "
     'one seed'),
    (['--config=configs/demo.py:smoke', '--config.seeds=0,1',
      '--config.train.parallel=seed'],
     "config.train.parallel='seed' is invalid: expected one of auto, data, "
     'seeds'),
    (['--config=configs/demo.py:smoke', '--workdir={a_file}'], 'a_file'),
    (['--config=configs/demo.py:smoke', '--workdir={a_file}/below'], 'a_file'),
])
@pytest.mark.slow
def test_user_mistakes_are_one_line_and_exit_2(tmp_path, arguments, message):
  bad, empty, a_file = tmp_path / 'bad.py', tmp_path / 'empty.py', tmp_path / 'a_file'
  bad.write_text(BAD_CONFIG_SYNTAX)
  empty.write_text(NO_GET_CONFIG)
  a_file.write_text('not a directory')
  (tmp_path / 'mistyped.py').write_text(MISTYPED_CONFIG)
  (tmp_path / 'untyped.py').write_text(UNTYPED_CONFIG)
  arguments = [a.format(bad=bad, empty=empty, a_file=a_file,
                        mistyped=tmp_path / 'mistyped.py',
                        untyped=tmp_path / 'untyped.py') for a in arguments]
  if not any(a.startswith('--workdir') for a in arguments):
    arguments.append(f'--workdir={tmp_path / "run"}')
  run = _launch(*arguments)
  assert run.returncode == 2, run.stderr[-2000:]
  errors = [line for line in run.stderr.splitlines() if 'error' in line.lower()]
  assert len(errors) == 1 and errors[0].startswith('error: '), run.stderr
  assert message in errors[0]
  assert 'Traceback' not in run.stderr
  assert "backend 'tpu'" not in run.stderr
  assert not (tmp_path / 'run' / 'config.json').exists()


TINY_CONFIG_FILE = """
from tests.fixtures.pipeline import tiny_config

def get_config(arg=None):
  return tiny_config()
"""
RUN_RECORD = ('results.json', 'report.md', 'config.json', 'rn.npz')


@pytest.mark.slow
def test_a_finished_run_is_kept_and_the_error_gives_the_reevaluation(tmp_path):
  workdir = tmp_path / 'run'
  pipeline.run(tiny_config(), workdir)
  record = {name: (workdir / name).read_bytes() for name in RUN_RECORD}
  config_file = tmp_path / 'tiny.py'
  config_file.write_text(TINY_CONFIG_FILE)
  run = _launch(f'--config={config_file}', f'--workdir={workdir}',
                '--config.rn.epochs=5', '--config.eval.protocols=A')
  assert run.returncode == 2, run.stderr[-2000:]
  errors = [line for line in run.stderr.splitlines() if 'error' in line.lower()]
  assert len(errors) == 1 and errors[0].startswith('error: '), run.stderr
  assert 'eval.protocols, rn.epochs' in errors[0]
  assert {name: (workdir / name).read_bytes() for name in RUN_RECORD} == record
  # The command it prints gives those results under evaluations/.
  command = shlex.split(errors[0].split('run: ', 1)[1])
  assert command[:3] == ['python', '-m', 'sge_jax.evaluate']
  evaluation = subprocess.run(
      [sys.executable, *command[1:]], capture_output=True, text=True,
      timeout=600, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
  assert evaluation.returncode == 0, evaluation.stderr[-2000:]
  written = list((workdir / 'evaluations').glob('*/results.json'))
  assert len(written) == 1
  results = json.loads(written[0].read_text())
  assert results['rn']['epochs'] == 5 and results['protocols'] == ['A']
  assert {name: (workdir / name).read_bytes() for name in RUN_RECORD} == record
  # A field python -m sge_jax.evaluate cannot change: a new --workdir.
  with pytest.raises(ConfigError, match='quirks.fixed_rn_shuffle.*new --workdir'):
    pipeline.run(tiny_config(**{'quirks.fixed_rn_shuffle': True}), workdir)
  # The same config again redoes the run; more epochs train on.
  pipeline.run(tiny_config(), workdir)
  pipeline.run(tiny_config(**{'train.epochs': 3}), workdir)
  assert json.loads((workdir / 'config.json').read_text())['train']['epochs'] == 3


@pytest.mark.slow
def test_ctrl_c_during_training_saves_the_step_reached_and_exits_130(tmp_path):
  process = subprocess.Popen(
      [sys.executable, str(REPO / 'launch.py'), '--config=configs/demo.py:smoke',
       f'--workdir={tmp_path}', '--config.train.epochs=200',
       '--config.train.checkpoint_every_steps=100000'],
      stderr=subprocess.PIPE, text=True, cwd=REPO,
      env=dict(os.environ, PYTHONPATH=str(REPO)))
  lines = []
  for line in process.stderr:                 # wait for training to run
    lines.append(line)
    if '[train] epoch' in line:
      break
  process.send_signal(signal.SIGINT)
  rest = process.stderr.read()
  assert process.wait(timeout=120) == 130, rest[-2000:]
  assert 'Traceback' not in rest
  assert 'stopping after the current step' in rest
  checkpoints = tmp_path / 'checkpoints'
  last = rest.strip().splitlines()[-1]
  stopped = re.fullmatch(
      r'interrupted: training stopped at step (\d+) of 1000; checkpoint step '
      rf'(\d+) saved in {re.escape(str(checkpoints))}; run the same command '
      r'again to resume', last)
  assert stopped and stopped.group(1) == stopped.group(2), last
  # Before, nothing was saved before the first periodic checkpoint.
  assert sorted(p.name for p in checkpoints.iterdir()) == [stopped.group(1)]


@pytest.mark.slow
def test_a_full_disk_is_one_line_with_exit_2_and_leaves_no_temporary(tmp_path):
  # `ulimit -f` makes every write beyond 32-64 KiB fail with EFBIG, as a full
  # disk fails with ENOSPC: here the first checkpoint (Orbax and TensorStore).
  run = subprocess.run(
      ['sh', '-c', 'trap "" XFSZ; ulimit -f 64; exec "$0" "$@"',
       sys.executable, str(REPO / 'launch.py'), '--config=configs/demo.py:smoke',
       f'--workdir={tmp_path}', '--config.stages=train',
       '--config.train.epochs=1'],
      capture_output=True, text=True, timeout=600, cwd=REPO,
      # Without the suite's compilation cache, whose writes would fail too.
      env={**{name: value for name, value in os.environ.items()
              if name != 'JAX_COMPILATION_CACHE_DIR'}, 'PYTHONPATH': str(REPO)})
  assert run.returncode == 2, run.stderr[-3000:]
  errors = [line for line in run.stderr.splitlines() if 'error' in line.lower()]
  assert errors == [
      f'error: cannot write checkpoint step 5 in {tmp_path / "checkpoints"}: '
      'File too large (errno 27); raise the file size limit (ulimit -f) and '
      'run the same command again'], run.stderr[-3000:]
  assert 'Traceback' not in run.stderr
  assert not [p for p in tmp_path.rglob('*') if 'tmp' in p.name]
  assert not list((tmp_path / 'checkpoints').iterdir())


def test_missing_dataset_names_the_expected_paths(tmp_path):
  run = _launch('--config=configs/kgbd.py:smoke', f'--workdir={tmp_path}',
                f'--config.data.root={tmp_path / "Datasets"}')
  assert run.returncode == 2
  assert 'KGBD' in run.stderr and 'Traceback' not in run.stderr
  assert 'sge_jax.preprocess' in run.stderr or 'Getting the data' in run.stderr


@pytest.mark.slow
def test_multi_seed_runs_each_seed_and_aggregates(tmp_path):
  config = tiny_config(**{'seeds': '0,1', 'rn.epochs': 2})
  results = pipeline.run(config, tmp_path)
  assert (tmp_path / 'seed_0' / 'results.json').exists()
  assert (tmp_path / 'seed_1' / 'results.json').exists()
  assert results['seeds'] == [0, 1]
  saved = json.loads((tmp_path / 'results.json').read_text())
  assert set(saved['rank1']) >= {'mean', 'std', 'values'}
  assert len(saved['rank1']['values']) == 2
  seed_configs = [json.loads((tmp_path / f'seed_{s}' / 'config.json').read_text())
                  for s in (0, 1)]
  assert [c['seed'] for c in seed_configs] == [0, 1]
  # Only the models and the RN vary: both seeds encode the same data.
  assert [c['data']['seed'] for c in seed_configs] == [0, 0]
  sequences = [np.load(tmp_path / f'seed_{s}' / 'encodings.npz')['sequences']
               for s in (0, 1)]
  np.testing.assert_array_equal(sequences[0], sequences[1])


@pytest.mark.slow
@pytest.mark.skipif(not GIST.exists(), reason='real Kinect data not beside the checkout')
def test_real_kinect_recordings_end_to_end_in_smoke_size(tmp_path):
  # No plots: nothing here looks at them (10 PNGs, 2-3 s).
  run = _launch('--config=configs/gist.py:smoke', f'--workdir={tmp_path}',
                f'--config.data.path={GIST}', '--config.eval.plots=False')
  assert run.returncode == 0, run.stderr[-3000:]
  results = json.loads((tmp_path / 'results.json').read_text())
  assert results['dataset'] == 'gist_gait_normal' and not results['synthetic']
  entry = results['entries']['A/test']
  assert entry['num_classes'] == 10
  assert 'bone_length' in entry['baselines']
  # Every GIST recording (one walk seen by one Kinect) is a walk; walks 1-10
  # train, 11-20 test, so no recording is in both.
  walks = results['entries']['A/test/walks-vote']
  assert walks['num_classes'] == 10 and walks['num_walks'] > 0
  assert walks['num_walks'] + walks['num_short_walks'] <= results['walks'][
      'num_walks']['test']
