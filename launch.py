"""Runs the whole sge-jax job: python launch.py --config=configs/kgbd.py [--workdir=DIR].

Any config field can be overridden, e.g. --config.train.epochs=5; a config
argument selects variants, e.g. --config=configs/kgbd.py:smoke. Running the same
command again resumes from the newest checkpoint in the workdir.
"""

import pathlib

from absl import app, flags, logging
import jax
from ml_collections import config_flags

from sge_jax import cli, pipeline
from sge_jax import workdir as workdir_lib
from sge_jax.evaluate import report

_CONFIG = cli.define_config_flag(
    config_flags.DEFINE_config_file, 'config', None, 'Config file, e.g. configs/kgbd.py or configs/demo.py:smoke.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Run directory (default: runs/<config name>[_<argument>]).')
flags.mark_flag_as_required('config')


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


def main(argv):
  if len(argv) > 1:
    cli.exit_with_user_error(f'unexpected arguments: {" ".join(argv[1:])} '
                             '(overrides are written --config.<field>=<value>)',
                             flags_hint=True)
  cli.quiet_libraries()
  workdir = pathlib.Path(_WORKDIR.value
                         or default_workdir(flags.FLAGS['config'].serialize()
                                            .split('=', 1)[1]))
  logging.info('sge-jax: %d %s device(s): %s; workdir %s', jax.device_count(),
               jax.default_backend(), ', '.join(map(str, jax.devices())), workdir)
  cli.exit_on_user_error(
      _run, workdir,
      interrupted_hint='every checkpoint written so far is kept; run the same '
      'command again to resume')


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
