"""Runs the whole sge-jax job: python launch.py --config=configs/kgbd.py [--workdir=DIR].

Any config field can be overridden, e.g. --config.train.epochs=5; a config
argument selects a variant, e.g. --config=configs/kgbd.py:smoke. Running the same
command again resumes from the newest checkpoint in the workdir.
"""

import logging as std_logging
import pathlib
import sys

from absl import app, flags, logging
import jax
from ml_collections import config_flags

from sge_jax import job, report
from sge_jax.checkpointing import CheckpointError, CheckpointMismatchError
from sge_jax.encoder_training import NonFiniteLossError
from sge_jax.errors import ConfigError, DataError

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file, e.g. configs/kgbd.py or configs/demo.py:smoke.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Run directory (default: runs/<config name>[_<argument>]).')
flags.mark_flag_as_required('config')

# Errors a user can act on: shown as one clear message, without a traceback.
_USER_ERRORS = (ConfigError, DataError, CheckpointError, CheckpointMismatchError,
                NonFiniteLossError)


class _QuietLibraries(std_logging.Filter):
  """Drops INFO chatter of Orbax (every save and restore logs a dozen lines)."""

  def filter(self, record):
    return (record.levelno >= std_logging.WARNING
            or '/orbax/' not in record.pathname)


def default_workdir(config_argument: str) -> pathlib.Path:
  path, _, variant = config_argument.partition(':')
  name = pathlib.Path(path).stem + (f'_{variant}' if variant else '')
  return pathlib.Path('runs') / name


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  logging.get_absl_logger().addFilter(_QuietLibraries())
  workdir = pathlib.Path(_WORKDIR.value
                         or default_workdir(flags.FLAGS['config'].serialize()
                                            .split('=', 1)[1]))
  logging.info('sge-jax: %d %s device(s): %s; workdir %s', jax.device_count(),
               jax.default_backend(), ', '.join(map(str, jax.devices())), workdir)
  try:
    results = job.run(_CONFIG.value, workdir)
  except _USER_ERRORS as error:
    logging.error('%s', error)
    print(f'error: {error}', file=sys.stderr)
    sys.exit(2)
  if results is not None:
    print('\n'.join(report.summary_lines(results)))
    print(f'results: {workdir / "results.json"}, {workdir / "report.md"}')


if __name__ == '__main__':
  app.run(main)
