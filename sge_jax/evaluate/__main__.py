r"""Re-evaluates a finished run without retraining the encoders.

Usage::

  python -m sge_jax.evaluate --workdir=DIR [--config.<field>=<value> ...]

Reads ``DIR/config.json`` and ``DIR/encodings.npz``, runs the evaluation
protocols again (recognition network, retrieval, baselines) and writes
``results.json``, ``report.md`` and the plots to ``DIR/evaluations/<name>/``
(``--name``, default from the overrides): the run's own results are never
replaced. The results are what a fresh run with the same overrides would
give on these encodings: the RN is re-scored from the run's saved ``rn.npz``
when such a run would train the same RN, else trained again (rn.epochs,
rn.hidden, or rn.selection=fixed/paper on a run that held validation rows
out, ...), and the results say why. The encoders are not touched. Overrides use launch.py's syntax and types
and may change ``rn.*`` and ``eval.*`` fields, e.g.::

  python -m sge_jax.evaluate --workdir=runs/kgbd --config.rn.selection=fixed \
      --config.eval.protocols=A --config.rn.epochs=50

A multi-seed workdir (``seed_<s>/`` sub-directories) is re-evaluated seed by
seed with the same overrides and aggregated into DIR/results.json and
DIR/report.md (mean ± std).
"""

from __future__ import annotations

import logging
from typing import Sequence

from absl import app, flags
from ml_collections import config_flags

from sge_jax import cli, reevaluation
from sge_jax import workdir as workdir_lib
from sge_jax.config.fields import base_config
from sge_jax.evaluate import report

_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Workdir of a finished run (holds config.json and '
    'encodings.npz, or seed_<s>/ sub-directories).')
flags.mark_flag_as_required('workdir')
_NAME = flags.DEFINE_string(
    'name', None, 'Folder name of this evaluation under <workdir>/evaluations/: '
    'letters, digits and ._,=+- only, not starting with "." (default: from the '
    'overrides, e.g. rn.selection-fixed; "rescored" without).')
# The defaults only give every field its type; what applies is the saved config
# with the fields given on the command line.
_CONFIG = cli.define_config_flag(
    config_flags.DEFINE_config_dict, 'config', base_config(), 'Overrides of the saved config, e.g. '
    '--config.rn.selection=fixed (rn.* and eval.* fields).', lock_config=True)


def _reevaluate() -> None:
  overrides = config_flags.get_override_values(flags.FLAGS['config'])
  results, out_dir = reevaluation.reevaluate(_WORKDIR.value, overrides,
                                         _NAME.value)
  for line in report.summary_lines(results):
    print(line)
  rn = results.get('rn') or {}
  if rn.get('source'):
    print(f'RN: {rn["source"]}')
  print(f'Wrote {workdir_lib.RESULTS_FILE} and {workdir_lib.REPORT_FILE} in '
        f'{out_dir} (the run\'s own results are unchanged)')


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    cli.exit_with_user_error(f'unexpected arguments: {" ".join(argv[1:])} '
                             '(overrides are written --config.<field>=<value>)',
                             flags_hint=True)
  logging.getLogger().setLevel(logging.INFO)
  cli.quiet_libraries()
  cli.exit_on_user_error(_reevaluate)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
