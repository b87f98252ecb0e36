"""Runs the whole sge-jax job: python launch.py --config=configs/kgbd.py [--workdir=DIR].

Any config field can be overridden, e.g. --config.train.epochs=5; a config
argument selects variants, e.g. --config=configs/kgbd.py:smoke. Running the same
command again resumes from the newest checkpoint in the workdir.

Many hosts: run the same command in every process with
--coordinator_address=HOST:PORT --num_processes=N --process_id=I, or with
--distributed=auto on a Cloud TPU pod slice, under SLURM or Open MPI (README,
"Many devices and many hosts"). Without these flags the run uses this process's
devices only.
"""

import faulthandler
import pathlib
import signal

from absl import app, flags, logging
import jax
from ml_collections import config_flags

from sge_jax import cli, distributed, pipeline
from sge_jax import workdir as workdir_lib
from sge_jax.errors import USER_ERRORS
from sge_jax.evaluate import report

_CONFIG = cli.define_config_flag(
    config_flags.DEFINE_config_file, 'config', None, 'Config file, e.g. configs/kgbd.py or configs/demo.py:smoke.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Run directory (default: runs/<config name>[_<argument>]).')
flags.mark_flag_as_required('config')

# Joining a multi-process job (sge_jax/distributed.py); none for a single process.
_DISTRIBUTED = flags.DEFINE_string(
    'distributed', '', "'auto': join the multi-process job JAX detects (Cloud "
    'TPU pod slice, SLURM, Open MPI). Leave empty with the three flags below, '
    'or for a single process.')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', '', "HOST:PORT of process 0's coordination service, "
    'the same for every process of a multi-process job.')
_NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes', None, 'Number of processes of the multi-process job.')
_PROCESS_ID = flags.DEFINE_integer(
    'process_id', None, 'Index of this process, 0 .. num_processes - 1 (0 '
    'writes the files).')
_COORDINATOR_TIMEOUT = flags.DEFINE_integer(
    'coordinator_timeout', 300, 'Seconds to wait for the coordinator and for '
    'every process to join.')
_PEER_TIMEOUT = flags.DEFINE_integer(
    'peer_timeout', 100, 'Seconds a process that stops answering is waited for '
    'before the whole job stops.')


def default_workdir(config_argument: str) -> pathlib.Path:
  path, _, variant = config_argument.partition(':')
  name = pathlib.Path(path).stem + (f'_{variant.replace(",", "_")}' if variant else '')
  return pathlib.Path('runs') / name


def _run(workdir: pathlib.Path) -> None:
  results = pipeline.run(cli.loaded_config(_CONFIG), workdir)
  if results is not None:
    print('\n'.join(report.summary_lines(results)))
    print(f'results: {workdir / workdir_lib.RESULTS_FILE}, '
          f'{workdir / workdir_lib.REPORT_FILE}')


def job_settings() -> distributed.JobSettings:
  return distributed.JobSettings(
      mode=_DISTRIBUTED.value, coordinator_address=_COORDINATOR.value,
      num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value,
      coordinator_timeout=_COORDINATOR_TIMEOUT.value,
      peer_timeout=_PEER_TIMEOUT.value)


def main(argv):
  if len(argv) > 1:
    cli.exit_with_user_error(f'unexpected arguments: {" ".join(argv[1:])} '
                             '(overrides are written --config.<field>=<value>)',
                             flags_hint=True)
  settings = job_settings()
  # A job that seems stuck: `kill -USR1 <pid>` prints every thread's stack.
  faulthandler.register(signal.SIGUSR1, all_threads=True)
  try:
    distributed.start(settings)     # before anything touches a device
  except USER_ERRORS as error:
    cli.exit_with_user_error(str(error))
  cli.quiet_libraries()
  distributed.quiet_other_processes()
  workdir = pathlib.Path(_WORKDIR.value
                         or default_workdir(flags.FLAGS['config'].serialize()
                                            .split('=', 1)[1]))
  processes = (f' in {jax.process_count()} processes'
               if jax.process_count() > 1 else '')
  logging.info('sge-jax: %d %s device(s)%s: %s; workdir %s', jax.device_count(),
               jax.default_backend(), processes,
               ', '.join(map(str, jax.devices())), workdir)
  cli.exit_on_user_error(
      _run, workdir,
      interrupted_hint='run the same command again to resume',
      multi_process=settings.multi_process,
      prefix=distributed.process_prefix())


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
