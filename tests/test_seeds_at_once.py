"""The job's ``train.parallel='seeds'`` (``pipeline.train_seeds_at_once``):
the seeds of ``config.seeds`` trained at once, as one seed stack over the 2
test devices, write the files their sequential runs (``'data'``) write; a
stopped run resumes; a stack that does not fit in memory is refused, or, for
'auto', trained one seed after another.

Tolerances. Seed s's stack trains the same objective and updates as its
sequential run, whose batch is split over the 2 devices; the two differ only
in the order of float32 sums (``sge_jax/train/seed_stack.py``):

* losses (every step is logged): ``LOSS_RTOL`` of tests/train/test_seed_stack.py,
  which makes the same comparison below the pipeline and derives it (a sum of
  ~1e4 terms, log2(n) eps ~ 1e-6 relative; 10x margin);
* parameters: Adam moves a parameter by up to 3.2 lr per step whatever the
  size of its gradient, so a rounding-level gradient of another sign can move
  it by 2 x 3.2 lr per step the other way: ``ADAM_BOUND`` (as that file). It
  separates seeds (their initial parameters differ by O(0.1)); the losses
  check the rest. (Measured here: 6e-7, in a bias of the projector whose
  gradient is near zero; the encoder's parameters 2e-7 at most.)
* encodings: ``ENCODING_ATOL`` of tests/distributed/test_many_processes.py,
  which compares the same kind of runs (the same updates, the batch's sums
  split otherwise over devices) on a larger model trained longer (k=32, 20
  steps at lr 1e-3; here k=8, 12 steps at 5e-4). Measured here: 2e-8; the
  encodings of two seeds differ by 0.1.
* results: the numbers of results.json as that file compares them (abs 1e-6:
  the RN trained on encodings that differ at the rounding level makes the same
  decisions).
"""

import json
import logging

import jax
import numpy as np
import pytest

from sge_jax import config as config_lib
from sge_jax import pipeline
from sge_jax import workdir as workdir_lib
from sge_jax.data import memory
from sge_jax.encode import load_encodings
from sge_jax.errors import DataError
from sge_jax.train import loop, seed_stack
from sge_jax.train.setup import restore_trained_params
from tests.fixtures import ctrl_c
from tests.fixtures.pipeline import tiny_config
from tests.fixtures.processes import run_job
from tests.fixtures.seed_stack import assert_same_records, metrics_records

LOSS_RTOL = 1e-5
ENCODING_ATOL = 2e-4
RESULT_ATOL = 1e-6
STEPS = 12                   # 2 epochs of 6 batches (tiny_config)
LEARNING_RATE = 5e-4
ADAM_BOUND = 2 * 3.2 * LEARNING_RATE * STEPS


def _overrides(seeds, parallel, **overrides):
  """The fields ``_config`` sets on the tiny config."""
  return {'seeds': seeds, 'train.parallel': parallel,
          'train.log_every_steps': 1, 'rn.epochs': 2, 'eval.protocols': 'A',
          'eval.baselines': False, 'eval.level': 'window', **overrides}


def _config(seeds, parallel, **overrides):
  """The tiny config with every step logged and a small evaluation."""
  return tiny_config(**_overrides(seeds, parallel, **overrides))


def _sequential(workdir, seeds):
  """``seeds`` one after another, each batch split over the 2 devices."""
  config = _config(seeds, 'data')
  assert config.train.learning_rate == LEARNING_RATE
  pipeline.run(config, workdir)
  return workdir


@pytest.fixture(scope='module')
def sequential(tmp_path_factory):
  """Seeds 0 and 1 one after another."""
  return _sequential(tmp_path_factory.mktemp('sequential') / 'run', '0,1')


def _tree(workdir, depth=3):
  """The files of a job down to the checkpoint steps (depth 3; not Orbax's own
  names), without the lock."""
  return sorted(str(path.relative_to(workdir)) for path in workdir.rglob('*')
                if len(path.relative_to(workdir).parts) <= depth
                and path.name != '.lock')


def _params(run_dir):
  config = workdir_lib.read_config(run_dir / workdir_lib.CONFIG_FILE)
  metadata = load_encodings(run_dir / workdir_lib.ENCODINGS_FILE).metadata
  return [np.asarray(leaf) for leaf in jax.tree.leaves(restore_trained_params(
      config_lib.run_settings(config, 1), run_dir, metadata.length,
      len(metadata.joint_names)))]


def _assert_same_seed_runs(stacked, sequential, seeds):
  """Each seed's folder holds what its sequential run's holds (``sequential``:
  a workdir, or one per seed)."""
  for seed in seeds:
    got = workdir_lib.seed_dir(stacked, seed)
    want = workdir_lib.seed_dir(sequential if not isinstance(sequential, dict)
                                else sequential[seed], seed)
    got_config = json.loads((got / 'config.json').read_text())
    want_config = json.loads((want / 'config.json').read_text())
    assert got_config['train'].pop('parallel') in config_lib.PARALLEL_MODES
    assert want_config['train'].pop('parallel') == 'data'
    assert got_config == want_config
    assert_same_records(metrics_records(got / 'metrics.jsonl'),
                        metrics_records(want / 'metrics.jsonl'), LOSS_RTOL)
    for a, b in zip(_params(got), _params(want)):
      assert np.abs(a - b).max() <= ADAM_BOUND
    with np.load(got / 'encodings.npz') as a, np.load(want / 'encodings.npz') as b:
      assert a.files == b.files
      for name in b.files:
        if name == 'encodings':
          assert np.abs(a[name] - b[name]).max() <= ENCODING_ATOL
        else:
          np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    got_results = json.loads((got / 'results.json').read_text())
    want_results = json.loads((want / 'results.json').read_text())
    assert got_results['seed'] == want_results['seed'] == seed
    for key in ('rank1', 'nauc'):
      assert got_results[key] == pytest.approx(want_results[key],
                                                abs=RESULT_ATOL), key


def _press_in_call_two(monkeypatch, module, name, presses=(0, 1)):
  """Ctrl-C during the second compiled call of ``module.name``'s calls (the
  sequential loop's or the stack's): the run stops after step 2, saved
  (``presses``: the Ctrl-Cs before each call; by default one before call 2)."""
  real_make = getattr(module, name)
  planned = presses

  def pressing_in_call_two(*args):
    run_calls = real_make(*args)
    presses = iter(planned)

    def call(*call_args):
      ctrl_c.press(next(presses, 0))
      return run_calls(*call_args)
    return call

  monkeypatch.setattr(module, name, pressing_in_call_two)


@pytest.mark.slow
def test_two_seeds_stopped_and_rerun_write_what_their_sequential_runs_write(
    sequential, tmp_path, monkeypatch, caplog):
  """2 seeds on 2 devices (one per device), by default ('auto'); Ctrl-C in
  the stack's second call saves both seeds at step 2, and the same command
  finishes the job: each seed's folder as sequentially (its checkpoint steps
  are those of a sequential run stopped at step 2), and their aggregate."""
  workdir = tmp_path / 'run'
  _press_in_call_two(monkeypatch, seed_stack, 'make_stack_calls')
  with ctrl_c.commands_handler(), pytest.raises(KeyboardInterrupt) as stopped:
    pipeline.run(_config('0,1', 'auto'), workdir)
  assert str(stopped.value) == (
      "training stopped at step 2 of 12 (seeds 0,1); each seed's step is "
      'saved in its checkpoints folder')
  assert not list(workdir.glob('seed_*/encodings.npz'))
  monkeypatch.undo()
  with caplog.at_level(logging.INFO):
    results = pipeline.run(_config('0,1', 'auto'), workdir)
  assert ('[seeds] train.parallel=auto: seeds 0,1 train at once, 1 per device '
          'on 2 device(s)') in caplog.messages
  assert _tree(workdir, depth=2) == _tree(sequential, depth=2)
  for seed in (0, 1):
    assert sorted(path.name for path in (workdir / f'seed_{seed}' / 'checkpoints'
                                         ).iterdir()) == ['11', '12', '8']
  _assert_same_seed_runs(workdir, sequential, [0, 1])
  # The aggregate of both seeds, which trained on the same data.
  assert results['seeds'] == [0, 1]
  saved = json.loads((workdir / 'results.json').read_text())
  assert saved['rank1']['values'] == pytest.approx(
      json.loads((sequential / 'results.json').read_text())['rank1']['values'],
      abs=RESULT_ATOL)
  assert saved['rank1']['mean'] == pytest.approx(np.mean(saved['rank1'][
      'values']))
  assert [json.loads((workdir / f'seed_{seed}' / 'config.json').read_text())[
      'data']['seed'] for seed in (0, 1)] == [0, 0]


def test_a_second_ctrl_c_stops_the_stack_at_once_naming_what_each_seed_keeps(
    tmp_path, monkeypatch):
  """Two Ctrl-Cs before the stack's fifth call (steps 1-4 done, step 3
  saved): it stops without saving step 4, naming each seed's checkpoint."""
  workdir = tmp_path / 'run'
  _press_in_call_two(monkeypatch, seed_stack, 'make_stack_calls',
                     presses=(0, 0, 0, 0, 2))
  with ctrl_c.commands_handler(), pytest.raises(KeyboardInterrupt) as stopped:
    pipeline.run(_config('0,1', 'seeds', stages='train'), workdir)
  kept = [f'seed {seed}: the newest checkpoint, step 3 in '
          f'{workdir}/seed_{seed}/checkpoints, is kept' for seed in (0, 1)]
  assert str(stopped.value) == ('training stopped at once, without saving its '
                                'current step; ' + '; '.join(kept))


@pytest.mark.parametrize('first, then', [('data', 'seeds'),
                                         ('seeds', 'data')])
@pytest.mark.slow
def test_a_job_stopped_in_one_mode_continues_in_the_other(
    sequential, tmp_path, monkeypatch, caplog, first, then):
  """train.parallel is resumable (config.RESUMABLE_FIELDS): a job stopped
  at step 2 of seed 0 one seed after another continues as a stack (seed 0
  from step 2, seed 1 from the start, in one program), and a stack stopped at
  step 2 of both seeds continues one seed after another; either way each
  seed's folder ends as its uninterrupted sequential run's."""
  assert 'train.parallel' in config_lib.RESUMABLE_FIELDS
  workdir = tmp_path / 'run'
  if first == 'data':
    _press_in_call_two(monkeypatch, loop, 'make_train_calls')
  else:
    _press_in_call_two(monkeypatch, seed_stack, 'make_stack_calls')
  with ctrl_c.commands_handler(), pytest.raises(KeyboardInterrupt):
    pipeline.run(_config('0,1', first), workdir)
  saved_steps = {seed: sorted(int(path.name) for path in (
      workdir / f'seed_{seed}' / 'checkpoints').glob('[0-9]*'))
                 for seed in (0, 1)}
  assert saved_steps == ({0: [2], 1: []} if first == 'data'
                         else {0: [2], 1: [2]})
  monkeypatch.undo()
  with caplog.at_level(logging.INFO):
    pipeline.run(_config('0,1', then), workdir)
  stacked = ('[seeds] train.parallel=seeds: seeds 0,1 train at once, 1 per '
             'device on 2 device(s)')
  assert (stacked in caplog.messages) == (then == 'seeds')
  assert _tree(workdir, depth=2) == _tree(sequential, depth=2)
  _assert_same_seed_runs(workdir, sequential, [0, 1])
  for seed in (0, 1):
    assert json.loads((workdir / f'seed_{seed}' / 'config.json').read_text())[
        'train']['parallel'] == then


@pytest.mark.slow
def test_four_seeds_on_two_devices_write_what_their_sequential_runs_write(
    sequential, tmp_path):
  """2 seeds per device; seeds 2 and 3 run sequentially in a job of their
  own (every job trains on the data of its root seed, 0 here)."""
  later = _sequential(tmp_path / 'sequential_2_3', '2,3')
  workdir = tmp_path / 'run'
  results = pipeline.run(_config('0-3', 'seeds'), workdir)
  assert _tree(workdir) == sorted(set(_tree(sequential)) | set(_tree(later)))
  _assert_same_seed_runs(workdir, {0: sequential, 1: sequential, 2: later,
                                   3: later}, [0, 1, 2, 3])
  expected = [json.loads((folder / 'results.json').read_text())['rank1'][
      'values'] for folder in (sequential, later)]
  assert results['rank1']['values'] == pytest.approx(
      expected[0] + expected[1], abs=RESULT_ATOL)


@pytest.mark.slow
def test_two_processes_of_one_device_write_what_the_sequential_runs_write(
    sequential, tmp_path):
  """launch.py as a 2-process job, one device each: the stack's two slots
  are on two processes (each process feeds its own seed), and the files are
  those of the sequential runs on one process of 2 devices."""
  config_file = tmp_path / 'stack_config.py'
  config_file.write_text(
      'from tests.fixtures.pipeline import tiny_config\n\n'
      'def get_config(arg=None):\n'
      f'  return tiny_config(**{_overrides("0,1", "auto")!r})\n')
  workdir = tmp_path / 'run'
  finished = run_job([f'--config={config_file}', f'--workdir={workdir}'],
                     tmp_path / 'logs', num_processes=2, local_devices=1,
                     timeout=300)
  for index, result in enumerate(finished):
    assert result.returncode == 0, f'process {index}:\n{result.stderr[-3000:]}'
  assert ('[seeds] train.parallel=auto: seeds 0,1 train at once, 1 per device '
          'on 2 device(s)') in finished[0].stderr
  assert _tree(workdir, depth=2) == _tree(sequential, depth=2)
  _assert_same_seed_runs(workdir, sequential, [0, 1])


# ----------------------------------------------------------------- memory


def _device_memory_between_one_seed_and_the_stack(monkeypatch, config):
  """Gives each (fake) accelerator the memory of the sequential training plus
  one byte: a stack, each seed with a whole batch, needs more."""
  run = config_lib.resolve(config, 2).runs[0]
  sequential = memory.training_bytes(3, run.model.hidden, run.model.num_layers,
                                     20, run.data.length,
                                     run.train.batch_size // 2)
  monkeypatch.setattr(memory, 'accelerator_bytes',
                      lambda: (sequential + 1, 'of each test device'))


def test_a_stack_that_does_not_fit_is_refused_naming_the_seeds_per_device(
    tmp_path, monkeypatch):
  config = _config('0-3', 'seeds')
  _device_memory_between_one_seed_and_the_stack(monkeypatch, config)
  with pytest.raises(DataError) as refused:
    pipeline.run(config, tmp_path / 'run')
  assert str(refused.value).startswith(
      'Training the seeds at once (2 per device on 2 device(s), each with a '
      'whole batch of 8; 3 models, J=20, f=6, model.hidden=8) needs at least ')
  assert 'Use --config.train.parallel=data' in str(refused.value)
  assert not list((tmp_path / 'run').glob('seed_*'))


def test_auto_trains_the_seeds_one_after_another_where_the_stack_does_not_fit(
    tmp_path, monkeypatch, caplog):
  config = _config('0,1', 'auto', stages='train', **{'train.epochs': 1})
  _device_memory_between_one_seed_and_the_stack(monkeypatch, config)

  def no_stack(*args):
    raise AssertionError('the stack was trained')

  monkeypatch.setattr(pipeline, 'train_encoders_stacked', no_stack)
  with caplog.at_level(logging.INFO):
    pipeline.run(config, tmp_path / 'run')
  assert any(message.startswith(
      '[seeds] train.parallel=auto: the 2 seeds train one after another, as '
      'one stack they do not fit in memory (Training the seeds at once (1 per '
      'device') for message in caplog.messages)
  for seed in range(2):
    assert (tmp_path / 'run' / f'seed_{seed}' / 'checkpoints' / '6').is_dir()
