"""What real runs meet: SIGKILL at random points, a damaged checkpoint, non-finite losses."""

import glob
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
# A demo smoke run of 30 epochs (150 steps, 5 per epoch) with a checkpoint at
# every epoch's end. The SIGKILL test kills at checkpoint steps, not after
# seconds, so these steps suffice on a machine of any speed.
RUN_FLAGS = ['--config=configs/demo.py:smoke', '--config.stages=train,encode',
             '--config.train.epochs=30', '--config.train.checkpoint_every_steps=5']


def _command(workdir, *extra):
  return [sys.executable, str(REPO / 'launch.py'), *RUN_FLAGS,
          f'--workdir={workdir}', *extra]


def _env():
  return dict(os.environ, PYTHONPATH=str(REPO))


def _run(workdir, *extra):
  return subprocess.run(_command(workdir, *extra), capture_output=True, text=True,
                        cwd=REPO, env=_env(), timeout=900)


def _encodings(workdir):
  with np.load(workdir / 'encodings.npz') as data:
    return data['encodings']


def _newest_checkpoint_step(workdir):
  """The newest step with a checkpoint directory in ``workdir``, finished or
  still being written (Orbax's '<step>.orbax-checkpoint-tmp-...'); 0 if none."""
  steps = [int(path.name.split('.')[0])
           for path in (workdir / 'checkpoints').glob('[0-9]*')
           if path.name.split('.')[0].isdigit()]
  return max(steps, default=0)


@pytest.mark.slow
def test_sigkill_at_random_points_then_rerun_gives_identical_results(tmp_path):
  # The reference run saves no checkpoint until its last step (the default
  # cadence of 8 steps would also do): the identical encodings below then also
  # show that the checkpoint cadence changes no number.
  straight = _run(tmp_path / 'straight',
                  '--config.train.checkpoint_every_steps=100000')
  assert straight.returncode == 0, straight.stderr[-2000:]
  rng = random.Random(7)
  killed = tmp_path / 'killed'
  kills_during_training = 0
  for attempt in range(2):
    # Kill at a random step past the newest checkpoint (so the second run is
    # killed after resuming), at most 30 steps on: both kills come well
    # before step 150 however fast the machine. The random delay lands the
    # kill anywhere in a step or in a save.
    target = _newest_checkpoint_step(killed) + rng.randint(1, 30)
    log_path = tmp_path / f'killed_{attempt}.log'
    with open(log_path, 'w') as log:   # a file, not a pipe: a full pipe would
      process = subprocess.Popen(      # stall the run before it checkpoints
          _command(killed), cwd=REPO, env=_env(),
          stdout=subprocess.DEVNULL, stderr=log)
      start = time.time()
      while (time.time() - start < 300 and process.poll() is None
             and _newest_checkpoint_step(killed) < target):
        time.sleep(0.02)
      time.sleep(rng.uniform(0.0, 0.2))
      if process.poll() is None:
        process.send_signal(signal.SIGKILL)
        kills_during_training += 1
      process.wait()
  assert kills_during_training == 2
  resumed = _run(killed)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  logs = ''.join(p.read_text() for p in tmp_path.glob('killed_*.log'))
  assert 'resumed from checkpoint' in logs + resumed.stderr
  np.testing.assert_array_equal(_encodings(killed), _encodings(tmp_path / 'straight'))


@pytest.mark.slow
def test_damaged_newest_checkpoint_falls_back_with_a_warning(tmp_path):
  # Checkpoints at steps 5 and 10; the second run resumes from 5 and trains
  # to 15. Training only: the fallback happens in the train stage.
  first = _run(tmp_path, '--config.train.epochs=2', '--config.stages=train')
  assert first.returncode == 0, first.stderr[-2000:]
  steps = sorted(int(p.name) for p in (tmp_path / 'checkpoints').iterdir()
                 if p.name.isdigit())
  newest = tmp_path / 'checkpoints' / str(steps[-1])
  for path in glob.glob(f'{newest}/**/d/*', recursive=True):
    os.truncate(path, 8)
  second = _run(tmp_path, '--config.train.epochs=3', '--config.stages=train')
  assert second.returncode == 0, second.stderr[-2000:]
  assert f'checkpoint {steps[-1]}' in second.stderr
  assert 'falling back to the previous checkpoint' in second.stderr
  assert f'resumed from checkpoint step {steps[-2]}' in second.stderr
  assert (tmp_path / 'checkpoints' / f'damaged_{steps[-1]}').exists()


@pytest.mark.slow
def test_non_finite_loss_stops_with_a_clear_message_and_saves_no_nan(tmp_path):
  # Keeping the last good checkpoint of a workdir is tested in-process
  # (test_encoder_training.py); here: what a user of launch.py sees.
  exploding = _run(tmp_path, '--config.train.learning_rate=1e38')
  assert exploding.returncode == 2
  assert 'became nan' in exploding.stderr and 'Traceback' not in exploding.stderr
  assert 'lower --config.train.learning_rate' in exploding.stderr
  assert not list((tmp_path / 'checkpoints').glob('[0-9]*'))
