"""Results that depend only on their inputs, kept beside a run so that a
re-evaluation does not compute them again.

The baselines (``baselines.py``) score the raw input sequences: they depend on
the data and the eval settings, never on the encoders or the recognition
network. A re-evaluation of a finished run (``python -m sge_jax.evaluate``)
would recompute exactly what the run's own evaluation computed; at KGBD's
scale that is most of its cost. So each baseline computation is stored, on
first use, under ``<run>/eval_cache/`` and read back when the same
computation is asked for again.

"The same computation" is decided by a digest of everything it reads, so a
stored result is used only where computing it would give the very same
values:

* every input (arrays: dtype, shape and bytes; settings: their values);
* the source code of ``sge_jax/evaluate/`` (any edit there starts afresh);
* the numpy version and the CPU features numpy dispatches on (float
  rounding can differ between AVX2 and AVX-512 machines, so a run directory
  copied to another machine recomputes rather than reuses).

Stored values are nested dicts, lists and tuples of numbers, strings and
NumPy arrays: one ``.npz`` per computation, the structure as JSON (floats
written as ``repr``, which reads back to the same float) and the arrays as
members, read with ``allow_pickle=False``. A file that cannot be read (cut
short, damaged, not a regular file) is a miss, recomputed and replaced; a
cache that cannot be written (read-only place, full disk) is logged and
skipped. Deleting ``eval_cache/`` at any time is safe.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import pathlib
from typing import Any, Callable, Iterator, Optional, TypeVar

import numpy as np

from sge_jax import __version__
from sge_jax.errors import WorkdirError
from sge_jax.workdir import write_atomically

CACHE_DIR = 'eval_cache'

_log = logging.getLogger(__name__)
_T = TypeVar('_T')
# A cache file larger than this is not read (it cannot be one this module
# wrote for any dataset this library evaluates in memory).
_MAX_FILE_BYTES = 8 << 30
_TREE = '__tree__'


def _environment_digest() -> bytes:
  """What besides the inputs decides the values: the evaluate package's
  source, sge_jax's and numpy's versions, numpy's CPU features."""
  digest = hashlib.blake2b(digest_size=32)
  package = pathlib.Path(__file__).resolve().parent
  for path in sorted(package.glob('*.py')):
    digest.update(path.name.encode() + b'\0' + path.read_bytes() + b'\0')
  try:
    from numpy._core._multiarray_umath import __cpu_features__ as features
  except ImportError:   # another numpy layout: the machine cannot be told
    features = {'unknown': True}
  enabled = ','.join(sorted(name for name, on in features.items() if on))
  digest.update(f'{__version__}|{np.__version__}|{enabled}'.encode())
  return digest.digest()


_ENVIRONMENT: Optional[bytes] = None


def _environment() -> bytes:
  global _ENVIRONMENT
  if _ENVIRONMENT is None:
    _ENVIRONMENT = _environment_digest()
  return _ENVIRONMENT


def _update(digest, value: Any) -> None:
  """Feeds ``value`` (arrays, numbers, strings, None, nested sequences and
  dicts) into ``digest`` unambiguously: type tags and lengths delimit."""
  if isinstance(value, np.ndarray):
    if value.dtype == object:
      raise TypeError('object arrays cannot be digested')
    array = np.ascontiguousarray(value)
    digest.update(f'a{array.dtype.str}{array.shape}'.encode())
    if array.size:       # (a view of no bytes cannot be cast)
      digest.update(memoryview(array.reshape(-1)).cast('B'))
  elif isinstance(value, dict):
    digest.update(f'd{len(value)}'.encode())
    for key in sorted(value):
      _update(digest, key)
      _update(digest, value[key])
  elif isinstance(value, (list, tuple)):
    digest.update(f'{type(value).__name__[0]}{len(value)}'.encode())
    for item in value:
      _update(digest, item)
  elif value is None or isinstance(value, (bool, int, float, str,
                                           np.generic)):
    text = repr(value.item() if isinstance(value, np.generic) else value)
    digest.update(f's{type(value).__name__}{len(text)}:{text}'.encode())
  else:
    raise TypeError(f'cannot digest a {type(value).__name__}')


def digest_of(what: str, inputs: Any) -> str:
  """Hex digest of a computation: its name, its inputs and the environment."""
  digest = hashlib.blake2b(_environment(), digest_size=20)
  _update(digest, what)
  _update(digest, inputs)
  return digest.hexdigest()


def _encode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
  """``value`` as a JSON tree whose arrays are references into ``arrays``."""
  if isinstance(value, np.ndarray):
    if value.dtype == object:
      raise TypeError('object arrays are not stored')
    name = f'a{len(arrays)}'
    arrays[name] = value
    return {'__array__': name}
  if isinstance(value, tuple):
    return {'__tuple__': [_encode(item, arrays) for item in value]}
  if isinstance(value, list):
    return [_encode(item, arrays) for item in value]
  if isinstance(value, dict):
    if not all(isinstance(key, str) for key in value):
      raise TypeError('only str dict keys are stored')
    if value.keys() & {'__array__', '__tuple__'}:
      raise TypeError('reserved key')
    return {key: _encode(item, arrays) for key, item in value.items()}
  if isinstance(value, np.generic):
    return value.item()
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  raise TypeError(f'a {type(value).__name__} is not stored')


def _decode(tree: Any, arrays: Any) -> Any:
  if isinstance(tree, list):
    return [_decode(item, arrays) for item in tree]
  if isinstance(tree, dict):
    if set(tree) == {'__array__'}:
      return arrays[tree['__array__']]
    if set(tree) == {'__tuple__'}:
      return tuple(_decode(item, arrays) for item in tree['__tuple__'])
    return {key: _decode(item, arrays) for key, item in tree.items()}
  return tree


def to_bytes(value: Any) -> bytes:
  """``value`` as the bytes of one cache file (.npz)."""
  arrays: dict[str, np.ndarray] = {}
  tree = json.dumps(_encode(value, arrays)).encode()
  buffer = io.BytesIO()
  np.savez(buffer, **{_TREE: np.frombuffer(tree, dtype=np.uint8)}, **arrays)
  return buffer.getvalue()


def from_file(path: pathlib.Path) -> Any:
  """The value stored in ``path`` (``to_bytes``).

  Raises:
    ValueError (and OSError, zipfile/json errors): not a cache file.
  """
  if not path.is_file() or path.stat().st_size > _MAX_FILE_BYTES:
    raise ValueError(f'{path} is not a regular cache file')
  with np.load(path, allow_pickle=False) as data:
    arrays = {name: data[name] for name in data.files}
  tree = json.loads(arrays.pop(_TREE).tobytes().decode())
  return _decode(tree, arrays)


_SHARED_DIRECTORY: Optional[pathlib.Path] = None


@contextlib.contextmanager
def shared_by_runs(directory: str | pathlib.Path) -> Iterator[None]:
  """Within it, every evaluation keeps the baselines' results in
  ``directory`` instead of its run's ``eval_cache/``: for many runs of one
  data set (the ablation's variants), which then compute them once."""
  global _SHARED_DIRECTORY
  previous, _SHARED_DIRECTORY = _SHARED_DIRECTORY, pathlib.Path(directory)
  try:
    yield
  finally:
    _SHARED_DIRECTORY = previous


def cache_for(run_dir: str | pathlib.Path) -> 'ResultCache':
  """The cache of an evaluation of the run in ``run_dir``: its
  ``eval_cache/``, or the directory ``shared_by_runs`` names."""
  if _SHARED_DIRECTORY is not None:
    return ResultCache(_SHARED_DIRECTORY)
  return ResultCache(pathlib.Path(run_dir) / CACHE_DIR)


class ResultCache:
  """Stored results of input-determined computations (module docstring).

  Attributes:
    directory: where the files go (``<run>/eval_cache``), or None: every
      computation runs, nothing is stored.
    reused, computed: how many computations were read back / run.
  """

  def __init__(self, directory: Optional[str | pathlib.Path]):
    self.directory = None if directory is None else pathlib.Path(directory)
    self.reused = 0
    self.computed = 0
    self._write_failed = False

  def get(self, what: str, inputs: Any, compute: Callable[[], _T]) -> _T:
    """``compute()``, or its stored value from an earlier call with the same
    ``what``, ``inputs`` and environment.

    Args:
      what: names the computation (letters, digits, '_' and '-'); part of the
        file name.
      inputs: everything ``compute`` reads (arrays, settings), as a nested
        structure of arrays, numbers, strings, None, lists/tuples and dicts.
      compute: () -> value, a nested structure of the same kinds.
    """
    if self.directory is None:
      self.computed += 1
      return compute()
    path = self.directory / f'{what}-{digest_of(what, inputs)}.npz'
    if path.exists() or path.is_symlink():
      try:
        value = from_file(path)
      except Exception as error:  # noqa: BLE001 -- any unreadable file is a miss
        _log.warning('[eval] %s cannot be read (%s): computed again.', path,
                     f'{type(error).__name__}: {error}')
      else:
        self.reused += 1
        return value
    value = compute()
    self.computed += 1
    self._store(path, value)
    return value

  def _store(self, path: pathlib.Path, value: Any) -> None:
    if self._write_failed:
      return
    try:
      data = to_bytes(value)
    except TypeError as error:      # a value of a kind not stored: not cached
      _log.warning('[eval] %s not stored: %s', path.name, error)
      return
    try:
      self.directory.mkdir(parents=True, exist_ok=True)
      write_atomically(path, lambda file: file.write(data))
    except (OSError, WorkdirError) as error:
      self._write_failed = True
      _log.warning('[eval] results cannot be kept in %s (%s); the next '
                   'evaluation computes them again.', self.directory, error)

  def log_summary(self) -> None:
    """One console line on what was read back, if anything was."""
    if self.reused:
      _log.info('[eval] baselines: %d of %d computations read back from %s '
                '(same data, settings and code; delete it to recompute)',
                self.reused, self.reused + self.computed, self.directory)

  def record(self) -> dict[str, Any]:
    """For results.json's ``run`` section: what was reused."""
    return {'directory': (str(self.directory) if self.directory is not None
                          else None),
            'reused': self.reused, 'computed': self.computed}

