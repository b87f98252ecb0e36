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
* the source code of ``sge_jax`` (any edit starts afresh);
* what decides the float rounding besides: the numpy version, the CPU
  features numpy dispatches on, its BLAS library, the CPU model and the
  settings that pick BLAS kernels (``OPENBLAS_CORETYPE``, ``MKL_CBWR``, ...).
  A run directory copied to another machine recomputes rather than reuses.

Stored values are nested dicts, lists and tuples of numbers, strings and
NumPy arrays: one ``.npz`` per computation, the structure as JSON (floats
written as ``repr``, which reads back to the same float) and the arrays as
members, read with ``allow_pickle=False``. A file that cannot be read (cut
short, damaged, not a regular file) is a miss, computed again and replaced
where it can be; a cache that cannot be written (read-only place, full disk,
a folder in a file's place) is a warning and the evaluation goes on. Each
file is written through a temporary file of its own, so evaluations may
store at once. Deleting ``eval_cache/`` at any time is safe (files of older
code are never read again and are not removed by themselves).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import pathlib
import secrets
import stat
from typing import Any, Callable, Iterator, Optional, TypeVar

import numpy as np

from sge_jax import __version__

CACHE_DIR = 'eval_cache'

_log = logging.getLogger(__name__)
_T = TypeVar('_T')
# A cache file larger than this is not read (it cannot be one this module
# wrote for any dataset this library evaluates in memory).
_MAX_FILE_BYTES = 8 << 30
_TREE = '__tree__'


# Settings that change which BLAS kernels run, hence the float rounding.
_BLAS_VARIABLES = ('OPENBLAS_CORETYPE', 'OPENBLAS_VERBOSE', 'MKL_CBWR',
                   'MKL_ENABLE_INSTRUCTIONS', 'MKL_DEBUG_CPU_TYPE',
                   'NPY_DISABLE_CPU_FEATURES', 'NPY_ENABLE_CPU_FEATURES')


def _cpu_model() -> str:
  """The CPU's vendor, family, model and name (Linux), which pick OpenBLAS's
  kernels; '' where they cannot be read."""
  try:
    with open('/proc/cpuinfo', encoding='utf-8', errors='replace') as file:
      lines = file.read(1 << 16).splitlines()
  except OSError:
    return ''
  wanted = ('vendor_id', 'cpu family', 'model', 'model name', 'stepping')
  fields = {}
  for line in lines:
    name, _, value = line.partition(':')
    name = name.strip()
    if name in wanted and name not in fields:
      fields[name] = value.strip()
  return repr(sorted(fields.items()))


def _environment_digest() -> bytes:
  """What besides the inputs decides the values: sge_jax's source, numpy's
  version, the CPU features it dispatches on, its BLAS library and the CPU
  model and settings that pick the BLAS kernels."""
  digest = hashlib.blake2b(digest_size=32)
  package = pathlib.Path(__file__).resolve().parents[1]    # sge_jax/
  for path in sorted(package.rglob('*.py')):
    name = path.relative_to(package).as_posix()
    digest.update(name.encode() + b'\0' + path.read_bytes() + b'\0')
  try:
    from numpy._core._multiarray_umath import __cpu_features__ as features
  except ImportError:   # another numpy layout: the machine cannot be told
    features = {'unknown': True}
  enabled = ','.join(sorted(name for name, on in features.items() if on))
  try:
    blas = np.show_config(mode='dicts')['Build Dependencies'].get('blas')
  except Exception:  # noqa: BLE001 -- a numpy without it: the version says
    blas = None
  variables = {name: os.environ.get(name) for name in _BLAS_VARIABLES}
  digest.update(repr((__version__, np.__version__, enabled, blas,
                      _cpu_model(), variables)).encode())
  return digest.digest()


_ENVIRONMENT: Optional[bytes] = None


def _environment() -> bytes:
  global _ENVIRONMENT
  if _ENVIRONMENT is None:
    _ENVIRONMENT = _environment_digest()
  return _ENVIRONMENT


def _update(digest, value: Any) -> None:
  """Feeds ``value`` (arrays, numbers, strings, None, nested sequences and
  dicts) into ``digest`` unambiguously: type tags and lengths delimit.

  Raises:
    TypeError: a value of another kind (object, masked or subclassed arrays
      included).
  """
  if isinstance(value, np.ndarray):
    if type(value) is not np.ndarray or value.dtype.hasobject:
      raise TypeError(f'a {type(value).__name__} of {value.dtype} cannot be '
                      'digested')
    array = np.ascontiguousarray(value)
    descr = np.lib.format.dtype_to_descr(array.dtype)
    digest.update(f'a{descr}{array.shape}'.encode())
    digest.update(array.reshape(-1).view(np.uint8))
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
    if type(value) is not np.ndarray or value.dtype.hasobject:
      raise TypeError(f'a {type(value).__name__} of {value.dtype} is not '
                      'stored')
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
    FileNotFoundError: there is none; ValueError (and other OSError,
    zipfile/json errors): not a cache file.
  """
  info = path.stat()          # FileNotFoundError: not stored (yet)
  if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_FILE_BYTES:
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
    key = None
    if self.directory is not None:    # no digest to compute where none is kept
      try:
        key = digest_of(what, inputs)
      except TypeError as error:    # an input of a kind it cannot digest
        _log.warning('[eval] %s is not stored: %s', what, error)
    if key is None:
      self.computed += 1
      return compute()
    path = self.directory / f'{what}-{key}.npz'
    try:
      value = from_file(path)
    except (FileNotFoundError, NotADirectoryError):
      pass                    # not stored (yet); a file in eval_cache/'s place
                              # is said once, when storing fails
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
    """Writes ``value`` to ``path`` through a temporary file of its own
    (several evaluations may store the same file at once), renamed into
    place; a failure is a warning (once) and the evaluation goes on."""
    try:
      data = to_bytes(value)
    except TypeError as error:      # a value of a kind not stored: not cached
      _log.warning('[eval] %s not stored: %s', path.name, error)
      return
    temporary = None
    try:
      self.directory.mkdir(parents=True, exist_ok=True)
      # A name of its own (mode 0666 less the umask, as every run file).
      name = self.directory / (f'.{path.stem[:40]}.{os.getpid()}.'
                               f'{secrets.token_hex(4)}.tmp')
      descriptor = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                           | os.O_CLOEXEC, 0o666)
      temporary = name
      with os.fdopen(descriptor, 'wb') as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
      os.replace(temporary, path)
      temporary = None
    except OSError as error:
      if not self._write_failed:
        _log.warning('[eval] results cannot be kept in %s (%s); the next '
                     'evaluation computes them again.', self.directory, error)
      self._write_failed = True
    finally:
      if temporary is not None:
        with contextlib.suppress(OSError):
          os.unlink(temporary)

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

