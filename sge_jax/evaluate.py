r"""Re-evaluates a finished run without retraining the encoders.

Usage::

  python -m sge_jax.evaluate --workdir=DIR [--config.<field>=<value> ...]

Reads ``DIR/config.json`` (written by the job) and ``DIR/encodings.npz``
(written by its encode stage), runs the evaluation protocols again
(``sge_jax.evaluation.evaluate_run``: recognition network, retrieval, baselines)
and rewrites ``results.json``, ``report.md`` and the plots in DIR. The RN is
retrained (it is part of the evaluation); the encoders are not touched, and
``config.json`` stays the record of the run (results.json says which settings
the evaluation used).

Overrides use the same syntax as ``launch.py`` and apply on top of the saved
config, typed like the saved value, e.g.::

  python -m sge_jax.evaluate --workdir=runs/kgbd --config.rn.selection=fixed \
      --config.eval.protocols=A --config.rn.epochs=50

A multi-seed workdir (sub-directories ``seed_<s>/``) is re-evaluated seed by
seed, with the same overrides, and aggregated into DIR/results.json and
DIR/report.md (mean ± std).
"""

from __future__ import annotations

import json
import logging
import pathlib
import re
import sys
from typing import Any, Sequence

from absl import app
from absl import flags
import ml_collections

from sge_jax import evaluation
from sge_jax import report
from sge_jax.encodings import load_encodings
from sge_jax.errors import ConfigError, DataError

CONFIG_FILE = 'config.json'
ENCODINGS_FILE = 'encodings.npz'
_OVERRIDE_PREFIX = '--config.'

_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Workdir of a finished run (holds config.json and '
    'encodings.npz, or seed_<s>/ sub-directories).')

_log = logging.getLogger(__name__)


def parse_overrides(arguments: Sequence[str]) -> list[tuple[str, str]]:
  """'--config.rn.epochs=5' arguments -> [('rn.epochs', '5')]."""
  overrides = []
  for argument in arguments:
    body = argument[len(_OVERRIDE_PREFIX):]
    if '=' not in body:
      raise ConfigError(f'{argument}: write overrides as '
                        '--config.<field>=<value>, e.g. --config.rn.epochs=5')
    field, value = body.split('=', 1)
    overrides.append((field.strip(), value))
  return overrides


def _typed(field: str, current: Any, text: str) -> Any:
  """``text`` converted to the type of the saved value ``current``."""
  try:
    if isinstance(current, bool):
      lowered = text.strip().lower()
      if lowered in ('true', '1', 'yes'):
        return True
      if lowered in ('false', '0', 'no'):
        return False
      raise ValueError(text)
    if isinstance(current, int):
      return int(text)
    if isinstance(current, float):
      return float(text)
  except ValueError:
    kinds = {bool: 'true or false', int: 'an integer', float: 'a number'}
    raise ConfigError(f'--config.{field}={text!r}: expected '
                      f'{kinds[type(current)]} like the saved value '
                      f'{current!r}') from None
  if isinstance(current, str):
    return text
  raise ConfigError(f'--config.{field}: only number, bool and string fields '
                    f'can be overridden here (saved value {current!r})')


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Sequence[tuple[str, str]]
                    ) -> ml_collections.ConfigDict:
  """A copy of ``config`` with the overrides applied (fields must exist)."""
  config = ml_collections.ConfigDict(config.to_dict())
  for field, text in overrides:
    *parents, name = field.split('.')
    section = config
    for parent in parents:
      if parent not in section or not isinstance(section[parent],
                                                 ml_collections.ConfigDict):
        raise ConfigError(f'--config.{field}: no section {parent!r} in the '
                          'saved config')
      section = section[parent]
    if name not in section:
      raise ConfigError(f'--config.{field}: no such field in the saved config '
                        f'(fields here: {", ".join(sorted(section.keys()))})')
    section[name] = _typed(field, section[name], text)
  return config


def load_run(run_dir: pathlib.Path, overrides: Sequence[tuple[str, str]]):
  """(config, encodings) of one run directory, with clear missing-file errors."""
  config_path = run_dir / CONFIG_FILE
  encodings_path = run_dir / ENCODINGS_FILE
  if not config_path.exists():
    raise DataError(
        f'No {CONFIG_FILE} in {run_dir}: the job writes it when a run starts '
        '(python launch.py --config=... --workdir=DIR). Point --workdir at the '
        'workdir of a run.')
  if not encodings_path.exists():
    raise DataError(
        f'No {ENCODINGS_FILE} in {run_dir}: the encode stage writes it after '
        'training. Finish the run first (--config.stages=train,encode or '
        '--config.stages=encode to encode with the trained checkpoints).')
  try:
    config = ml_collections.ConfigDict(json.loads(config_path.read_text()))
  except json.JSONDecodeError as error:
    raise DataError(f'{config_path} is not valid JSON: {error}') from None
  return apply_overrides(config, overrides), load_encodings(encodings_path)


def seed_directories(workdir: pathlib.Path) -> list[pathlib.Path]:
  """``seed_<s>/`` sub-directories in seed order."""
  found = [(int(match.group(1)), path) for path in workdir.iterdir()
           if path.is_dir()
           and (match := re.fullmatch(r'seed_(-?\d+)', path.name))]
  return [path for _, path in sorted(found)]


def reevaluate(workdir: str | pathlib.Path,
               overrides: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
  """Re-evaluates one run, or every seed of a multi-seed run and aggregates.

  Returns:
    The results dict (the aggregate for a multi-seed workdir).
  """
  workdir = pathlib.Path(workdir)
  if not workdir.is_dir():
    raise DataError(f'--workdir={workdir} is not a directory')
  seeds = seed_directories(workdir)
  if not seeds:
    config, encoding_set = load_run(workdir, overrides)
    return evaluation.evaluate_run(config, encoding_set, workdir)
  per_seed = []
  for seed_dir in seeds:
    _log.info('[evaluate] %s', seed_dir)
    config, encoding_set = load_run(seed_dir, overrides)
    per_seed.append(evaluation.evaluate_run(config, encoding_set, seed_dir))
  return evaluation.aggregate_seed_results(per_seed, workdir)


def _split_arguments(argv: Sequence[str]) -> tuple[list[str], list[str]]:
  """(absl arguments, --config.* override arguments)."""
  regular = [a for a in argv if not a.startswith(_OVERRIDE_PREFIX)]
  overrides = [a for a in argv if a.startswith(_OVERRIDE_PREFIX)]
  return regular, overrides


_OVERRIDES: list[tuple[str, str]] = []


def _flags_parser(argv: list[str]) -> list[str]:
  """absl flags parser that sets the --config.* overrides aside first."""
  regular, override_arguments = _split_arguments(argv)
  try:
    _OVERRIDES[:] = parse_overrides(override_arguments)
  except ConfigError as error:
    raise app.UsageError(str(error)) from None
  try:
    return flags.FLAGS(regular)
  except flags.Error as error:
    print(f'FATAL Flags parsing error: {error}', file=sys.stderr)
    print('Pass --helpshort or --helpfull to see help on flags.',
          file=sys.stderr)
    sys.exit(1)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  if not _WORKDIR.value:
    raise app.UsageError('--workdir is required')
  logging.getLogger().setLevel(logging.INFO)
  try:
    results = reevaluate(_WORKDIR.value, _OVERRIDES)
  except (ConfigError, DataError) as error:
    print(f'error: {error}', file=sys.stderr)
    sys.exit(1)
  for line in report.summary_lines(results):
    print(line)
  print(f'Wrote {report.RESULTS_FILE} and {report.REPORT_FILE} in '
        f'{_WORKDIR.value}')


if __name__ == '__main__':
  app.run(main, flags_parser=_flags_parser)
