"""launch.py as a multi-process job on CPU: 2 processes x 2 devices against one
process with 4 devices and with 1 device on the same global batch; killing every
process mid-training and resuming; one process failing, interrupted or killed
(tests/fixtures/faulty_launch.py); the job's one-line errors.

Every job runs under tests/fixtures/processes.py: a deadline per job, and the
peers of a failed process killed after a few seconds (a minute where the test
watches them end by themselves). The jobs run one after another (two processes
already fill the two cores of the CI machine).
"""

import json
import os
import signal
import socket
import time

import numpy as np
import pytest

from sge_jax import config as config_lib
from sge_jax import workdir as workdir_lib
from sge_jax.encode import load_encodings
from sge_jax.train.setup import restore_trained_params
from sge_jax.workdir.lock import hold_workdir_lock
from tests.fixtures.processes import (PEER_TIMEOUT, REPO, free_port, run_job,
                                     start_job)

# launch.py with a fault injected into one process (SGE_FAULT).
FAULTY_LAUNCH = REPO / 'tests' / 'fixtures' / 'faulty_launch.py'
# The demo smoke run with 2 epochs (10 steps of the global batch of 32, in
# calls of 4 and 1 steps): long enough for a kill to land in training (after
# step 4, before step 10), short enough for the suite.
RUN_FLAGS = ('--config=configs/demo.py:smoke', '--config.train.epochs=2')
TOTAL_STEPS = 10
# Layouts of the same 4 (or 1) devices: (processes, devices per process).
LAYOUTS = {'2x2': (2, 2), '1x4': (1, 4), '1x1': (1, 1)}
# Flags of one layout's run on top of RUN_FLAGS. The plots (9 PNGs, 2-3 s)
# are checked in the 1x1 run only: in a job of many processes process 0 alone
# evaluates (sge_jax.pipeline.run_single), with the code of a single process,
# while the others wait for it (through the recognition network's training).
NO_PLOTS = ('--config.eval.plots=False',)
LAYOUT_FLAGS = {'2x2': NO_PLOTS, '1x4': NO_PLOTS}

# Tolerances. One step's loss and gradient are float32 sums over the global
# batch; the layouts only change how those sums are split between devices
# (and processes), so they differ by reduction order: for a sum of n terms
# the relative error is at most about n * eps with eps = 2**-24 = 6e-8, and
# typically sqrt(n) * eps. The largest sums here have n = 32 sequences x 6
# frames x 20 joints x 3 = 11520 terms: worst case 7e-4, typically 6e-6 (the
# prototype measured 2.7e-6 on gradients). Adam divides each update by the
# gradient's running RMS, so a relative gradient error delta moves a parameter
# by about lr * delta per step (lr = 1e-3), at most lr * delta * steps over 10
# steps: 10 * 1e-3 * 7e-4 = 7e-6 in the worst case. The losses are then
# recomputed with those parameters, so their relative differences stay of the
# order of the gradient's: we allow the worst case, 1e-3 relative.
LOSS_RTOL = 1e-3
PARAM_ATOL = 1e-5          # 7e-6 rounded up
# CAGEs are attention-weighted sums of LSTM states (|h| < 1) through 3-layer
# products of the parameters: a parameter error of 1e-5 moves them by at most
# a few times that per layer.
ENCODING_ATOL = 2e-4


@pytest.fixture(scope='module')
def compilation_cache(tmp_path_factory):
  """Shared by the runs of this module, which then compile each single-device
  program (encoder, recognition network) once; JAX does not cache the pmapped
  training program."""
  return tmp_path_factory.mktemp('xla_cache')


def _run(tmp_path_factory, layout, compilation_cache):
  processes, devices = LAYOUTS[layout]
  base = tmp_path_factory.mktemp(layout)
  workdir = base / 'run'
  finished = run_job([*RUN_FLAGS, *LAYOUT_FLAGS.get(layout, ()),
                      f'--workdir={workdir}'],
                     base / 'logs', num_processes=processes,
                     local_devices=devices, compilation_cache=compilation_cache)
  for index, result in enumerate(finished):
    assert result.returncode == 0, (
        f'{layout} process {index} exited with {result.returncode}:\n'
        + result.stderr[-3000:])
  return workdir, finished


@pytest.fixture(scope='module')
def two_by_two(tmp_path_factory, compilation_cache):
  """The 2x2 job of ``runs``, also the straight run of the kill test: a
  fixture of its own, so that an xdist worker that gets the kill test but not
  the layouts' test runs this job alone, not all three layouts."""
  return _run(tmp_path_factory, '2x2', compilation_cache)


@pytest.fixture(scope='module')
def runs(two_by_two, tmp_path_factory, compilation_cache):
  return {layout: two_by_two if layout == '2x2'
          else _run(tmp_path_factory, layout, compilation_cache)
          for layout in LAYOUTS}


def _losses(workdir):
  """{(step, 'loss/<term>' or 'validation/...', model): value} of metrics.jsonl."""
  values = {}
  for line in (workdir / workdir_lib.METRICS_FILE).read_text().splitlines():
    record = json.loads(line)
    for key, per_model in record.items():
      if key.startswith(('loss/', 'validation/')) and isinstance(per_model, dict):
        for model, value in per_model.items():
          values[(record['step'], key, model)] = value
  return values


def _params(workdir):
  config = workdir_lib.read_config(workdir / workdir_lib.CONFIG_FILE)
  metadata = load_encodings(workdir / workdir_lib.ENCODINGS_FILE).metadata
  return restore_trained_params(config_lib.run_settings(config, 1), workdir,
                                metadata.length, len(metadata.joint_names))


def _leaves(tree):
  import jax  # pylint: disable=g-import-not-at-top
  return [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]


@pytest.mark.slow
def test_two_processes_train_encode_and_evaluate_like_one_of_4_or_1_device(
    runs):
  # One test for the three layouts' runs, so the module fixture that makes
  # them is set up once however the tests are spread over xdist workers.
  for other in ('1x4', '1x1'):
    _assert_two_processes_like(runs, other)
  _assert_one_process_runs_every_stage_and_prints_the_results(runs)


def _assert_two_processes_like(runs, other):
  multi, finished = runs['2x2']
  single, _ = runs[other]
  # Files: written by process 0 only; the other process prints no results.
  assert 'Rank-1' in finished[0].stdout and 'Rank-1' not in finished[1].stdout
  assert '[train] epoch' in finished[0].stderr
  assert '[train] epoch' not in finished[1].stderr
  for name in ('config.json', 'metrics.jsonl', 'encodings.npz', 'results.json',
               'report.md'):
    assert (multi / name).exists(), name
  # Checkpoint array data: written by process 0 alone (Orbax's protocol).
  checkpoints = multi / workdir_lib.CHECKPOINT_DIR
  assert list(checkpoints.glob('*/default/ocdbt.process_0'))
  assert not list(checkpoints.glob('*/default/ocdbt.process_1'))

  multi_losses, single_losses = _losses(multi), _losses(single)
  assert multi_losses.keys() == single_losses.keys()
  loss_difference = max(abs(multi_losses[k] - single_losses[k]) / abs(single_losses[k])
                        for k in single_losses)
  param_difference = max(np.abs(a - b).max() for a, b in
                         zip(_leaves(_params(multi)), _leaves(_params(single))))
  multi_encodings = load_encodings(multi / workdir_lib.ENCODINGS_FILE).encodings
  single_encodings = load_encodings(single / workdir_lib.ENCODINGS_FILE).encodings
  encoding_difference = np.abs(multi_encodings - single_encodings).max()
  print(f'2x2 vs {other}: losses {loss_difference:.2e} relative, parameters '
        f'{param_difference:.2e}, encodings {encoding_difference:.2e}')
  assert loss_difference <= LOSS_RTOL
  assert param_difference <= PARAM_ATOL
  assert encoding_difference <= ENCODING_ATOL

  multi_results = json.loads((multi / workdir_lib.RESULTS_FILE).read_text())
  single_results = json.loads((single / workdir_lib.RESULTS_FILE).read_text())
  for key in ('rank1', 'nauc', 'map'):
    if single_results[key] is not None:
      assert multi_results[key] == pytest.approx(single_results[key], abs=1e-6), key


def _assert_one_process_runs_every_stage_and_prints_the_results(runs):
  # The demo smoke run through launch.py, one process of one device (the
  # '1x1' layout above): every stage, the files, the printed summary.
  workdir, (finished,) = runs['1x1']
  assert 'Rank-1' in finished.stdout and 'nAUC' in finished.stdout
  for name in ('config.json', 'metrics.jsonl', 'encodings.npz', 'results.json',
               'report.md'):
    assert (workdir / name).exists(), name
  assert list((workdir / workdir_lib.CHECKPOINT_DIR).iterdir())
  results = json.loads((workdir / workdir_lib.RESULTS_FILE).read_text())
  assert results['synthetic'] and 0.0 <= results['rank1'] <= 1.0
  assert '[train] epoch' in finished.stderr        # progress lines in the log
  assert 'orbax' not in finished.stderr.lower()    # library chatter filtered
  # Walks next to windows (the window entries themselves are checked against
  # the code before the walk level in tests/test_procedures.py).
  assert 'A/test/walks-vote' in results['entries']
  assert 'walks' in finished.stdout
  assert (workdir / 'cmc_B_test_walks-vote.png').exists()
  # The encoder's training curves (from metrics.jsonl) and protocol A's
  # confusion matrix.
  for name in ('training_loss.png', 'confusion_A_test.png'):
    assert name in results['plots'] and (workdir / name).exists(), name
  # Each result line once: printed, not logged as well.
  output = finished.stdout + finished.stderr
  for line in finished.stdout.splitlines():
    if line.startswith(('A/', 'B/')):
      assert output.count(line) == 1, line


def _checkpoint_steps(workdir):
  directory = workdir / workdir_lib.CHECKPOINT_DIR
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


@pytest.mark.slow
def test_killing_every_process_mid_training_then_resuming_gives_the_same_run(
    two_by_two, compilation_cache, tmp_path):
  straight, _ = two_by_two
  workdir = tmp_path / 'run'
  # Checkpoint cadence changes no number (training calls end at epoch ends and
  # log points only), so this run must reproduce the straight 2x2 run exactly.
  run_flags = [*RUN_FLAGS, f'--workdir={workdir}', '--config.stages=train,encode',
               '--config.train.checkpoint_every_steps=2']
  first_checkpoint = workdir / workdir_lib.CHECKPOINT_DIR / '4'
  killed = start_job(run_flags, tmp_path / 'killed',
                     compilation_cache=compilation_cache)
  killed.wait(timeout=300, until=first_checkpoint.exists)   # SIGKILLs both
  steps = _checkpoint_steps(workdir)
  assert steps and steps[-1] < TOTAL_STEPS, f'not killed during training: {steps}'
  assert not (workdir / workdir_lib.ENCODINGS_FILE).exists()

  resumed = run_job(run_flags, tmp_path / 'resumed',
                    compilation_cache=compilation_cache)
  for index, result in enumerate(resumed):
    assert result.returncode == 0, (index, result.stderr[-3000:])
  assert f'resumed from checkpoint step {steps[-1]}' in resumed[0].stderr
  assert _checkpoint_steps(workdir)[-1] == TOTAL_STEPS
  assert _losses(workdir) == _losses(straight)
  for resumed_leaf, straight_leaf in zip(_leaves(_params(workdir)),
                                         _leaves(_params(straight))):
    np.testing.assert_array_equal(resumed_leaf, straight_leaf)
  np.testing.assert_array_equal(
      load_encodings(workdir / workdir_lib.ENCODINGS_FILE).encodings,
      load_encodings(straight / workdir_lib.ENCODINGS_FILE).encodings)


@pytest.mark.slow
def test_ctrl_c_on_one_process_stops_every_process_at_one_saved_step(
    compilation_cache, tmp_path):
  workdir = tmp_path / 'run'
  job = start_job([*RUN_FLAGS, f'--workdir={workdir}', '--config.stages=train',
                   '--config.train.epochs=400',
                   '--config.train.checkpoint_every_steps=100000'],
                  tmp_path / 'logs', compilation_cache=compilation_cache)
  try:
    deadline = time.monotonic() + 300
    while '[train] epoch' not in job.stderr(0):
      assert time.monotonic() < deadline and job.processes[0].poll() is None, (
          job.stderr(0)[-3000:])
      time.sleep(0.1)
    job.processes[1].send_signal(signal.SIGINT)   # the other process: not
    finished = job.wait(timeout=120)              # signalled
  finally:
    job.kill()
  assert [result.returncode for result in finished] == [130, 130], (
      finished[0].stderr[-2000:] + finished[1].stderr[-2000:])
  steps = _checkpoint_steps(workdir)
  assert len(steps) == 1 and steps[0] < 2000
  for index, result in enumerate(finished):
    assert 'Traceback' not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f'[process {index}] interrupted: training stopped at step {steps[0]} '
        f'of 2000; checkpoint step {steps[0]} saved in '
        f'{workdir / workdir_lib.CHECKPOINT_DIR}; run the same command again '
        'to resume')


# ----------------------------------------------------------------- errors


def _assert_one_line_error(result, *fragments):
  assert result.returncode == 2, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if 'error: ' in line]
  assert len(errors) == 1, result.stderr[-3000:]
  for fragment in fragments:
    assert fragment in errors[0], errors[0]


@pytest.mark.slow
def test_a_batch_not_divisible_by_every_process_device_stops_every_process(tmp_path):
  finished = run_job([*RUN_FLAGS, f'--workdir={tmp_path / "run"}',
                      '--config.train.batch_size=30'], tmp_path / 'logs')
  for result in finished:
    _assert_one_line_error(result, 'config.train.batch_size=30',
                           'multiple of the 4 devices')
  assert not (tmp_path / 'run' / workdir_lib.CONFIG_FILE).exists()


@pytest.mark.slow
def test_processes_that_load_different_data_stop_naming_the_first_that_differs(
    tmp_path):
  # The same config (different ones stop earlier, naming the fields) but other
  # data on process 1: a host with other files under the same path.
  finished = run_job([*RUN_FLAGS, f'--workdir={tmp_path / "run"}'],
                     tmp_path / 'logs', script=FAULTY_LAUNCH,
                     per_process_env=[{}, {'SGE_FAULT': 'other_data'}])
  for result in finished:
    _assert_one_line_error(result, 'process 1 sees a different training split')
  assert finished[1].stderr.count('[process 1] error:') == 1
  assert not (tmp_path / 'run' / workdir_lib.CONFIG_FILE).exists()


@pytest.mark.slow
def test_a_busy_workdir_stops_every_process_of_the_job(tmp_path):
  workdir = tmp_path / 'run'
  with hold_workdir_lock(workdir):
    finished = run_job([*RUN_FLAGS, f'--workdir={workdir}'], tmp_path / 'logs')
  _assert_one_line_error(finished[0], 'is in use')
  _assert_one_line_error(finished[1], 'process 0 stopped the job',
                         'WorkdirBusyError')


@pytest.mark.slow
def test_an_unreachable_coordinator_is_one_line_within_the_timeout(tmp_path):
  finished = run_job([*RUN_FLAGS, f'--workdir={tmp_path / "run"}'],
                     tmp_path / 'logs', num_processes=1,
                     per_process_args=[[
                         f'--coordinator_address=127.0.0.1:{free_port()}',
                         '--num_processes=2', '--process_id=1',
                         '--coordinator_timeout=1']], timeout=120)
  _assert_one_line_error(finished[0], 'could not be reached within '
                         '--coordinator_timeout=1 s', 'start process 0')


def test_incomplete_job_flags_name_the_missing_ones(tmp_path):
  finished = run_job([*RUN_FLAGS, f'--workdir={tmp_path / "run"}'],
                     tmp_path / 'logs', num_processes=1,
                     per_process_args=[['--num_processes=2']], timeout=120)
  _assert_one_line_error(finished[0], '--coordinator_address, --process_id')


def test_auto_detection_outside_a_cluster_is_one_line(tmp_path):
  finished = run_job([*RUN_FLAGS, f'--workdir={tmp_path / "run"}'],
                     tmp_path / 'logs', num_processes=1,
                     per_process_args=[['--distributed=auto']], timeout=120)
  _assert_one_line_error(finished[0], '--distributed=auto found no cluster')


# ----------------------------------------------------------------- one process fails

# Seconds within which the other processes end once one failed: the watchdog
# polls every 0.5 s and settles 1 s, a crash is told from a lost process
# within 5 s; start-up noise on a loaded machine on top.
PROMPTLY = 8


def _one_line(result, status, *fragments):
  """``result`` ended with ``status`` and exactly one line naming the stop."""
  assert result.returncode == status, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr, result.stderr[-3000:]
  assert 'Check failure' not in result.stderr, result.stderr[-3000:]
  lines = [line for line in result.stderr.splitlines()
           if 'error: ' in line or 'interrupted' in line]
  assert len(lines) == 1, result.stderr[-3000:]
  for fragment in fragments:
    assert fragment in lines[0], lines[0]


@pytest.mark.slow
def test_processes_with_different_configs_stop_naming_the_fields(tmp_path):
  # Before, process 1 trained with its own temperature and learning rate, and
  # config.json recorded process 0's.
  finished = run_job(
      [*RUN_FLAGS, f'--workdir={tmp_path / "run"}'], tmp_path / 'logs',
      per_process_args=[[], ['--config.train.temperature=0.5',
                             '--config.train.learning_rate=0.01']])
  for result in finished:
    _assert_one_line_error(
        result, 'run different configs: process 1 has '
        'train.learning_rate=0.01 (process 0: 0.0005), train.temperature=0.5 '
        '(process 0: 0.1)', 'same --config file')
  assert not (tmp_path / 'run' / workdir_lib.CONFIG_FILE).exists()


@pytest.mark.parametrize('fault, faulty, status, fragments', [
    # A bug: the process shows its traceback, the others one line.
    ('crash', 1, 1, ('process 1 crashed (RuntimeError: injected crash',
                     'run the same command again in every process')),
    # Ctrl-C on one process only (the same path: slow).
    pytest.param('interrupt', 1, 130, ('process 1 was interrupted (Ctrl-C)',),
                 marks=pytest.mark.slow),
    # A user error outside the checks every process takes part in, on the
    # process that hosts the coordinator (it leaves last).
    pytest.param('user_error', 0, 2, ('process 0 stopped the job: DataError: '
                                      'injected data error',),
                 marks=pytest.mark.slow),
])
@pytest.mark.slow
def test_a_failure_on_one_process_stops_the_others_promptly_in_one_line(
    tmp_path, fault, faulty, status, fragments):
  # Before, the others waited up to twice --peer_timeout, then ended in a
  # Python traceback ('[process 0] crashed:') or a C++ abort.
  environment = [{}, {}]
  environment[faulty] = {'SGE_FAULT': fault}
  job = start_job([*RUN_FLAGS, f'--workdir={tmp_path / "run"}'],
                  tmp_path / 'logs', script=FAULTY_LAUNCH,
                  per_process_env=environment)
  finished = job.wait(timeout=300, grace=60)
  other = finished[1 - faulty]
  _one_line(other, status, *fragments)
  assert abs(other.ended - finished[faulty].ended) < PROMPTLY
  own = finished[faulty]
  assert own.returncode == status, own.stderr[-3000:]
  if fault == 'crash':
    assert own.stderr.count('Traceback') == 1
    assert own.stderr.rstrip().splitlines()[-1].startswith(
        '[process 1] error: crashed: RuntimeError: injected crash (a bug: the '
        'traceback is above)')
  else:
    _one_line(own, status)


@pytest.mark.slow
def test_a_process_killed_in_training_stops_the_others_in_one_line_and_resumes(
    tmp_path, compilation_cache):
  # Before, process 0 ended in '[process 0] crashed:' and a traceback, or a
  # C++ abort ('Terminating process because the JAX distributed service
  # detected fatal errors').
  run_flags = [*RUN_FLAGS, f'--workdir={tmp_path / "run"}',
               '--config.stages=train']
  job = start_job(run_flags, tmp_path / 'killed', script=FAULTY_LAUNCH,
                  compilation_cache=compilation_cache,
                  per_process_env=[{}, {
                      'SGE_FAULT': 'kill',   # process 0 has its checkpoints open
                      'SGE_FAULT_AT': 'sge_jax.train.loop:_train_loop'}])
  finished = job.wait(timeout=300, grace=60)
  assert finished[1].returncode == -9
  _one_line(finished[0], 1, 'process 1 stopped answering',
            'run the same command again in every process to resume')
  assert finished[0].ended - finished[1].ended < PEER_TIMEOUT + PROMPTLY
  resumed = run_job(run_flags, tmp_path / 'resumed',
                    compilation_cache=compilation_cache)
  for result in resumed:
    assert result.returncode == 0, result.stderr[-3000:]


# ----------------------------------------------------------------- joining


@pytest.mark.slow
def test_a_coordinator_port_in_use_is_one_line_on_every_process(tmp_path):
  # Before: a segmentation fault on process 0, an abort on process 1.
  with socket.socket() as squatter:
    squatter.bind(('127.0.0.1', 0))
    squatter.listen()
    address = f'127.0.0.1:{squatter.getsockname()[1]}'
    job = start_job(
        [*RUN_FLAGS, f'--workdir={tmp_path / "run"}'], tmp_path / 'logs',
        job_flags=False,
        per_process_args=[[f'--coordinator_address={address}',
                           '--num_processes=2', f'--process_id={index}',
                           '--coordinator_timeout=3'] for index in (0, 1)])
    finished = job.wait(timeout=120, grace=60)
  _assert_one_line_error(finished[0], f'cannot open the coordinator port '
                         f'{address.split(":")[1]}', 'in use on this host')
  _assert_one_line_error(finished[1], f'--coordinator_address={address} is '
                         'held by another program')


@pytest.mark.slow
def test_two_processes_with_the_same_process_id_are_one_line_each(tmp_path):
  # Before: both aborted, one at once, one after --coordinator_timeout.
  address = f'127.0.0.1:{free_port()}'
  job = start_job(
      [*RUN_FLAGS, f'--workdir={tmp_path / "run"}'], tmp_path / 'logs',
      job_flags=False,
      per_process_args=[[f'--coordinator_address={address}',
                         '--num_processes=2', '--process_id=0',
                         '--coordinator_timeout=3']] * 2)
  finished = job.wait(timeout=120, grace=60)
  first, second = sorted(finished, key=lambda result: result.ended)
  _assert_one_line_error(first, 'another process on this host already runs as '
                         '--process_id=0')
  _assert_one_line_error(second, 'not every process joined the job within '
                         '--coordinator_timeout=3 s', 'its own --process_id')


def test_auto_detection_with_incomplete_cluster_variables_names_them(tmp_path):
  # Before: a KeyError traceback from JAX's Open MPI detection.
  environment = {name: None for name in os.environ
                 if name.startswith(('SLURM_', 'OMPI_'))}
  environment['OMPI_MCA_orte_hnp_uri'] = '1531576320.0;tcp://10.0.0.1:34911'
  job = start_job([*RUN_FLAGS, f'--workdir={tmp_path / "run"}',
                   '--distributed=auto'], tmp_path / 'logs', num_processes=1,
                  per_process_env=[environment])
  _assert_one_line_error(job.wait(timeout=120)[0],
                         'Open MPI variables are incomplete',
                         'OMPI_COMM_WORLD_SIZE', 'mpirun')
