"""The run directory: its file names, atomic writes, and the metrics log.

One run (one seed) writes into its workdir::

  config.json      the full config of the run (written once every check passed)
  metrics.jsonl    one JSON object per logging step (losses, steps/s, epoch, ...)
  checkpoints/     Orbax checkpoints of the encoder train state (newest few)
  encodings.npz    CAGEs of every split (``sge_jax.encode.encodings``)
  results.json     metrics of every protocol, split and baseline
  report.md        tables to paste; *.png plots
  rn.npz           the trained recognition network (every rule's parameters)
  evaluations/<name>/  re-evaluations (python -m sge_jax.evaluate), each with
                   its own results.json, report.md and plots

A multi-seed run has one such directory per seed, ``<workdir>/seed_<s>/``, and the
aggregated ``results.json`` and ``report.md`` at the top. Every file is written
to a temporary name and renamed over the old one, so an interruption never leaves
a half-written file.
"""

from __future__ import annotations

import json
import math
import pathlib
import re
from typing import Any, Mapping

import ml_collections

from sge_jax import input_files
from sge_jax.errors import DataError

CONFIG_FILE = 'config.json'
METRICS_FILE = 'metrics.jsonl'
CHECKPOINT_DIR = 'checkpoints'
ENCODINGS_FILE = 'encodings.npz'
RESULTS_FILE = 'results.json'
REPORT_FILE = 'report.md'
RN_FILE = 'rn.npz'
EVALUATIONS_DIR = 'evaluations'
SEED_DIR_PATTERN = re.compile(r'seed_(-?\d+)')
# config.json is a few kB; a file far larger is not one (and is not read).
MAX_CONFIG_BYTES = 16 * 2**20


def seed_dir(workdir: pathlib.Path, seed: int) -> pathlib.Path:
  """Where seed ``seed`` of a multi-seed run lives."""
  return workdir / f'seed_{seed}'


def evaluation_dir(run_dir: pathlib.Path, name: str) -> pathlib.Path:
  """Where the re-evaluation ``name`` of a run writes its results."""
  return run_dir / EVALUATIONS_DIR / name


def seed_directories(workdir: pathlib.Path) -> list[pathlib.Path]:
  """The ``seed_<s>/`` sub-directories of a multi-seed workdir, in seed order."""
  found = [(int(match.group(1)), path) for path in workdir.iterdir()
           if path.is_dir() and (match := SEED_DIR_PATTERN.fullmatch(path.name))]
  return [path for _, path in sorted(found)]


# ----------------------------------------------------------------- writing


def write_text_atomically(path: str | pathlib.Path, text: str) -> None:
  """Writes ``text`` to a temporary file beside ``path``, then renames it over."""
  path = pathlib.Path(path)
  temporary = path.with_name(path.name + '.tmp')
  temporary.write_text(text)
  temporary.replace(path)


def json_safe(value: Any, non_finite_as_text: bool = False) -> Any:
  """A JSON-safe copy: NumPy scalars and arrays become Python values.

  Non-finite floats become null, or with ``non_finite_as_text`` the strings
  'nan', 'inf', '-inf' (the metrics log keeps a diverged loss readable).
  """
  if isinstance(value, Mapping):
    return {str(k): json_safe(v, non_finite_as_text) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_safe(v, non_finite_as_text) for v in value]
  if hasattr(value, 'tolist'):       # NumPy arrays and scalars
    return json_safe(value.tolist(), non_finite_as_text)
  if isinstance(value, float) and not math.isfinite(value):
    return str(value) if non_finite_as_text else None
  return value


def write_json(data: Mapping[str, Any], path: str | pathlib.Path) -> None:
  """Writes ``data`` as indented JSON atomically."""
  write_text_atomically(path, json.dumps(json_safe(data), indent=1) + '\n')


def write_config(config: ml_collections.ConfigDict,
                 workdir: pathlib.Path) -> None:
  write_text_atomically(workdir / CONFIG_FILE, config.to_json(indent=2) + '\n')


def read_config(path: str | pathlib.Path) -> ml_collections.ConfigDict:
  """A saved ``config.json`` as a ConfigDict.

  Raises:
    DataError: the file is missing, not a regular file or not a JSON object.
  """
  path = input_files.require_regular_file(
      path, 'run record', 'Restore it, or use a new --workdir.')
  if path.exists() and path.stat().st_size > MAX_CONFIG_BYTES:
    raise DataError(f'{path} is {path.stat().st_size} bytes, not a config (a '
                    'few kB); restore it, or use a new --workdir.')
  try:
    saved = json.loads(path.read_text())
  except FileNotFoundError:
    raise DataError(f'No {path.name} at {path}: the job writes it when a run '
                    'starts; point to the workdir of a run.') from None
  except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
    raise DataError(f'{path} is not valid JSON ({error}); it is the record of '
                    'a run: restore it, or use a new --workdir.') from None
  if not isinstance(saved, dict):
    raise DataError(f'{path} does not hold a config (a JSON object); restore '
                    'it, or use a new --workdir.')
  return ml_collections.ConfigDict(saved)


# ----------------------------------------------------------------- metrics log


class MetricsLog:
  """Appends one JSON object per line to ``<workdir>/metrics.jsonl``.

  Every record has ``stage`` and ``step``. When a stage resumes from a checkpoint
  at step s, the lines it wrote after s before the interruption are dropped, so
  the file describes the run that actually produced the final state.

  With ``enabled`` False (the processes of a multi-process job other than
  process 0) nothing is written.
  """

  def __init__(self, path: str | pathlib.Path, enabled: bool = True):
    self.path = pathlib.Path(path)
    self.enabled = enabled
    if enabled:
      self.path.parent.mkdir(parents=True, exist_ok=True)

  def write(self, record: Mapping[str, Any]) -> None:
    if not self.enabled:
      return
    with self.path.open('a') as f:
      f.write(json.dumps(json_safe(record, non_finite_as_text=True),
                         sort_keys=False) + '\n')

  def warnings(self) -> list[str]:
    """The ``warning`` texts of the records so far, in order, each once."""
    found = []
    if self.path.exists():
      for line in self.path.read_text().splitlines():
        try:
          warning = json.loads(line).get('warning')
        except (json.JSONDecodeError, AttributeError):
          continue
        if warning and warning not in found:
          found.append(warning)
    return found

  def drop_after(self, stage: str, step: int) -> None:
    """Removes ``stage`` records with a step beyond ``step`` (a resumed stage)."""
    if not self.enabled or not self.path.exists():
      return
    kept = []
    for line in self.path.read_text().splitlines():
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        continue  # a line cut short by the interruption
      if record.get('stage') == stage and record.get('step', 0) > step:
        continue
      kept.append(line)
    write_text_atomically(self.path, ''.join(line + '\n' for line in kept))
