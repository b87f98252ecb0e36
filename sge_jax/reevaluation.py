"""Re-evaluating a finished run (``python -m sge_jax.evaluate``).

``reevaluate(workdir, overrides, name)`` runs only the evaluate stage of a
finished run, or of every seed of a multi-seed run (aggregated as the job
does), with the settings its config.json records and rn.*/eval.* overrides.
The results go to ``evaluations/<name>/``; the run's own files are never
replaced. The saved RN is re-scored when its fingerprint matches the settings
(the same numbers as a fresh run with them), else trained again.
"""

from __future__ import annotations

import functools
import pathlib
import re
from typing import Any, Optional

import jax
import ml_collections

from sge_jax import pipeline
from sge_jax import workdir as workdir_lib
from sge_jax.config import identity, resolution
from sge_jax.config.settings import RunSettings
from sge_jax.errors import ConfigError, DataError
from sge_jax.workdir.lock import hold_workdir_lock

# Sections a re-evaluation can change: everything else made the encodings.
REEVALUATION_SECTIONS = identity.REEVALUATION_SECTIONS


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: dict[str, Any]) -> ml_collections.ConfigDict:
  """A copy of a saved ``config`` with ``{'rn.epochs': 5, ...}`` applied.

  Raises:
    ConfigError: an override outside ``REEVALUATION_SECTIONS`` (it would not
      change the saved encodings), naming every such field.
  """
  refused = sorted(field for field in overrides
                   if field.split('.')[0] not in REEVALUATION_SECTIONS)
  if refused:
    raise ConfigError(
        f're-evaluation cannot honour --config.{", --config.".join(refused)}: '
        'the encodings were made with the saved value. Only rn.* and eval.* '
        'fields apply here; for the others run launch.py with a new --workdir.')
  config = ml_collections.ConfigDict(config.to_dict())
  for field, value in overrides.items():
    *sections, name = field.split('.')
    section = config
    for part in sections:
      section = section[part]
    section[name] = value
  return config


def _saved_run(run_dir: pathlib.Path, overrides: dict[str, Any]
               ) -> RunSettings:
  """The settings of one finished run: its saved config with the overrides,
  checked."""
  config_path = run_dir / workdir_lib.CONFIG_FILE
  if not config_path.exists():
    raise DataError(
        f'No {workdir_lib.CONFIG_FILE} in {run_dir}: the job writes it when a '
        'run starts (python launch.py --config=... --workdir=DIR). Point '
        '--workdir at the workdir of a run.')
  if not (run_dir / workdir_lib.ENCODINGS_FILE).exists():
    raise DataError(
        f'No {workdir_lib.ENCODINGS_FILE} in {run_dir}: the encode stage writes '
        'it after training. Finish the run first (--config.stages=encode to '
        'encode with the trained checkpoints).')
  config = apply_overrides(workdir_lib.read_config(config_path), overrides)
  try:
    return resolution.run_settings(config, jax.device_count())
  except (AttributeError, KeyError) as error:   # a field the file lacks
    missing = re.findall(r"'(\w+)'", str(error))
    raise DataError(
        f'{config_path} is damaged (a field the evaluation needs is missing: '
        f'{missing[-1] if missing else error}); it is the record of a run: '
        'restore it, or use a new --workdir.') from None


def evaluation_name(overrides: dict[str, Any]) -> str:
  """A folder name for a re-evaluation: 'rn.selection-fixed_rn.epochs-3', or
  'rescored' without overrides."""
  parts = [f'{field}-{value}' for field, value in sorted(overrides.items())]
  name = '_'.join(parts) or 'rescored'
  return re.sub(r'[^A-Za-z0-9_.,-]+', '-', name)[:120]


def reevaluate(workdir: str | pathlib.Path,
               overrides: Optional[dict[str, Any]] = None,
               name: Optional[str] = None) -> tuple[dict[str, Any], pathlib.Path]:
  """Re-evaluates one run, or every seed of a multi-seed run and aggregates.

  The results go to ``<workdir>/evaluations/<name>/`` (per seed:
  ``seed_<s>/evaluations/<name>/``); the run's own results are never replaced.
  The RN is re-scored from the run's saved ``rn.npz`` when that can serve the
  requested settings (same numbers as the run), else trained again (a note in
  the results says why).

  Args:
    workdir: the workdir of a finished run.
    overrides: ``{'rn.selection': 'fixed', ...}`` on top of the saved config
      (rn.* and eval.* only).
    name: the evaluation's folder name (default: from the overrides): one
      folder under ``evaluations/`` (``workdir.check_evaluation_name``).

  Returns:
    (the results dict, the aggregate for a multi-seed workdir; its folder).

  Raises:
    ConfigError: ``name`` is not one safe folder name, or an override is
      outside rn.* and eval.*.
    WorkdirError: ``evaluations/<name>`` exists as a file or leads elsewhere.
    DataError: not the workdir of a run, or its saved files are damaged.
  """
  workdir = pathlib.Path(workdir)
  overrides = dict(overrides or {})
  name = name or evaluation_name(overrides)
  workdir_lib.check_evaluation_name(name)
  if not workdir.is_dir():
    raise DataError(f'--workdir={workdir} is not a directory')
  with hold_workdir_lock(workdir):
    out_dir = workdir_lib.evaluation_dir(workdir, name)
    seed_dirs = workdir_lib.seed_directories(workdir)
    if not seed_dirs:
      return pipeline.evaluate_saved(_saved_run(workdir, overrides), workdir,
                             name), out_dir
    runs = [(_saved_run(seed_workdir, overrides), seed_workdir)
            for seed_workdir in seed_dirs]
    for _, seed_workdir in runs:     # every seed's folder checked before work
      workdir_lib.evaluation_dir(seed_workdir, name)
    return pipeline.over_seeds(runs, out_dir, functools.partial(
        pipeline.evaluate_saved, output=name)), out_dir
