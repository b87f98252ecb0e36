"""The run directory: its file names, atomic writes, and the metrics log.

One run (one seed) writes into its workdir::

  config.json      the full config of the run (written once every check passed)
  metrics.jsonl    one JSON object per logging step (losses, steps/s, epoch, ...),
                   and 'timing' records of the stages' wall times
                   (``sge_jax.evaluate.run_record``)
  tensorboard/     the same scalars as TensorBoard event files, with
                   config.train.tensorboard (``sge_jax.workdir.tensorboard``)
  checkpoints/     Orbax checkpoints of the encoder train state (newest few)
  encodings.npz    CAGEs of every split (``sge_jax.encode.encodings``)
  results.json     metrics of every protocol, split and baseline
  report.md        tables to paste; *.png plots
  rn.npz           the trained recognition network (every rule's parameters)
  evaluations/<name>/  re-evaluations (python -m sge_jax.evaluate), each with
                   its own results.json, report.md and plots
  eval_cache/      the baselines' results, read back by later evaluations of
                   the same data (``sge_jax.evaluate.result_cache``)

A multi-seed run has one such directory per seed, ``<workdir>/seed_<s>/``, and the
aggregated ``results.json`` and ``report.md`` at the top. Every file is written
to a temporary name and renamed over the old one, so an interruption never leaves
a half-written file; a write that fails (disk full, read-only) is one line
naming the file and the cause (``WorkdirError``) and leaves the previous version
and no temporary file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import pathlib
import re
from typing import Any, BinaryIO, Callable, Mapping, Optional

import ml_collections

from sge_jax.config import checks
from sge_jax.data import input_files
from sge_jax.errors import ConfigError, DataError, WorkdirError
from sge_jax.workdir import tensorboard as tensorboard_lib

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


# A re-evaluation's name is one folder under evaluations/: these characters
# only, not starting with '.', so it can never be '..', absolute or nested.
EVALUATION_NAME_PATTERN = re.compile(r'[A-Za-z0-9_,=+-][A-Za-z0-9._,=+-]*')
MAX_EVALUATION_NAME = 120


def check_evaluation_name(name: str) -> None:
  """Raises ConfigError unless ``name`` is one safe folder name (letters,
  digits and ``._,=+-``, not starting with '.', at most 120 characters)."""
  if (len(name) > MAX_EVALUATION_NAME
      or not EVALUATION_NAME_PATTERN.fullmatch(name)):
    raise ConfigError(
        f'--name={name!r} is not a folder name: it names one folder under '
        f'<workdir>/{EVALUATIONS_DIR}/, so use letters, digits and ._,=+- '
        f'only, not starting with ".", at most {MAX_EVALUATION_NAME} '
        'characters (e.g. --name=rn-fixed).')


def evaluation_dir(run_dir: pathlib.Path, name: str) -> pathlib.Path:
  """Where the re-evaluation ``name`` of a run writes its results:
  ``run_dir/evaluations/<name>``.

  Raises:
    ConfigError: ``name`` is not one safe folder name.
    WorkdirError: that path, or ``evaluations``, exists as something other
      than a directory, or leads outside ``run_dir/evaluations/`` (a link).
  """
  check_evaluation_name(name)
  evaluations = run_dir / EVALUATIONS_DIR
  path = evaluations / name
  for place in (evaluations, path):
    if (place.exists() or place.is_symlink()) and not place.is_dir():
      raise WorkdirError(
          f'{place} exists and is not a directory: the re-evaluation would '
          'write its results there. Move it away, or choose another --name.')
  # A second guard: a link must not carry the results out of evaluations/.
  if path.resolve().parent != evaluations.resolve():
    raise WorkdirError(
        f'{path} leads to {path.resolve()}, outside {evaluations}: the '
        're-evaluation writes only there. Remove that link, or choose another '
        '--name.')
  return path


def seed_directories(workdir: pathlib.Path) -> list[pathlib.Path]:
  """The ``seed_<s>/`` sub-directories of a multi-seed workdir, in seed order."""
  found = [(int(match.group(1)), path) for path in workdir.iterdir()
           if path.is_dir() and (match := SEED_DIR_PATTERN.fullmatch(path.name))]
  return [path for _, path in sorted(found)]


# ----------------------------------------------------------------- writing


def write_error(path: str | pathlib.Path, error: OSError, verb: str = 'write',
                kept: Optional[str] = 'the previous version is kept'
                ) -> WorkdirError:
  """The one-line error for a write to ``path`` that failed with ``error``
  (disk full, read-only, no permission): what, why, and the way out.

  ``kept`` (what of the file survives) is said only when ``path`` exists.
  """
  path = pathlib.Path(path)
  cause = error.strerror or str(error)
  if error.filename and pathlib.Path(error.filename) != path:
    cause += f': {error.filename}'      # e.g. the temporary file beside it
    if error.filename2:
      cause += f' -> {error.filename2}'
  if error.errno is not None:
    cause += f' (errno {error.errno})'
  way_out = _WAYS_OUT.get(error.errno, 'fix that')
  survives = f'; {kept}' if kept and path.exists() else ''
  return WorkdirError(f'cannot {verb} {path}: {cause}; {way_out} and run the '
                      f'same command again{survives}')


_WAYS_OUT = {
    errno.ENOSPC: 'free some space',
    errno.EDQUOT: 'free some space or raise your disk quota',
    errno.EFBIG: 'raise the file size limit (ulimit -f)',
    errno.EACCES: 'make it and its directory writable',
    errno.EPERM: 'make it and its directory writable',
    errno.EROFS: 'use a writable filesystem',
}


def write_atomically(path: str | pathlib.Path,
                     write: Callable[[BinaryIO], Any]) -> None:
  """Writes ``path`` through ``write(file)``: into a temporary file beside it,
  flushed to disk, then renamed over it. ``path`` is therefore always either
  its previous version or the complete new one.

  Raises:
    WorkdirError: the write failed (``write_error``: path, cause, way out); the
      temporary file is removed and the previous version is left as it was.
  """
  path = pathlib.Path(path)
  temporary = path.with_name(path.name + '.tmp')
  try:
    try:
      with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)        # left by a killed run; never followed
      with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                        | os.O_CLOEXEC, 0o666), 'wb') as file:
        write(file)
        file.flush()
        os.fsync(file.fileno())
      os.replace(temporary, path)
    except BaseException:
      with contextlib.suppress(OSError):
        os.unlink(temporary)
      raise
  except OSError as error:
    raise write_error(path, error) from error


def write_text_atomically(path: str | pathlib.Path, text: str) -> None:
  """Writes ``text`` (UTF-8) with ``write_atomically``."""
  write_atomically(path, lambda file: file.write(text.encode()))


def append_text(path: str | pathlib.Path, text: str) -> None:
  """Appends ``text`` (UTF-8) to ``path``; if that fails part-way, the file is
  cut back to what it held before.

  Raises:
    WorkdirError: naming the path and the cause (``write_error``).
  """
  data = text.encode()
  try:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                 0o666)
    try:
      size = os.fstat(fd).st_size
      try:
        while data:
          data = data[os.write(fd, data):]
      except OSError:
        os.ftruncate(fd, size)
        raise
    finally:
      os.close(fd)
  except OSError as error:
    raise write_error(path, error, 'append to',
                      'the lines written before are kept') from error


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


def write_config(record: str, workdir: pathlib.Path) -> None:
  """Writes a run's config.json: ``record``, its resolved config as JSON
  text (``RunSettings.record``)."""
  write_text_atomically(workdir / CONFIG_FILE, record + '\n')


def read_config(path: str | pathlib.Path) -> ml_collections.ConfigDict:
  """A saved ``config.json`` as a ConfigDict.

  Raises:
    DataError: the file is missing, not a regular file, not a JSON object,
      lacks a section or has a field of the wrong type
      (``config.saved_config_problem``).
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
  problem = checks.saved_config_problem(saved)
  if problem:
    raise DataError(f'{path} is damaged ({problem}); it is the record of a '
                    'run: restore it, or use a new --workdir.')
  return ml_collections.ConfigDict(saved)


# ----------------------------------------------------------------- metrics log


class MetricsLog:
  """Appends one JSON object per line to ``<workdir>/metrics.jsonl``.

  Every record has ``stage`` and ``step``. When a stage resumes from a checkpoint
  at step s, the lines it wrote after s before the interruption are dropped, so
  the file describes the run that actually produced the final state.

  With ``enabled`` False (the processes of a multi-process job other than
  process 0) nothing is written. With ``tensorboard`` (``train.tensorboard``)
  every record's scalars also go to TensorBoard event files in
  ``<workdir>/tensorboard/`` (``sge_jax.workdir.tensorboard``; ConfigError
  here when the writer library is not installed).
  """

  def __init__(self, path: str | pathlib.Path, enabled: bool = True,
               tensorboard: bool = False):
    self.path = pathlib.Path(path)
    # Reading or appending to a FIFO (or a folder) there would block or fail.
    input_files.require_regular_file(
        self.path, 'metrics log of the run',
        'Move it away: the run writes its metrics log there.')
    self.enabled = enabled
    self.events = None
    if enabled:
      self.path.parent.mkdir(parents=True, exist_ok=True)
      if tensorboard:
        self.events = tensorboard_lib.EventWriter(
            self.path.parent / tensorboard_lib.TENSORBOARD_DIR)

  def write(self, record: Mapping[str, Any]) -> None:
    if not self.enabled:
      return
    append_text(self.path, json.dumps(
        json_safe(record, non_finite_as_text=True), sort_keys=False) + '\n')
    if self.events is not None:
      try:
        self.events.write(json_safe(record))
      except OSError as error:
        raise write_error(self.events.directory, error) from error

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
