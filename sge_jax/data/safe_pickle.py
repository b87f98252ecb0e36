"""Reads the authors' pickled ids files without running anything from them.

``ids_<TAG>_<f>.npy`` is ``np.save(path, {person: [indices]})``: a .npy header
and a pickle, which ``np.load(path, allow_pickle=True)`` would let call
anything (``os.system``). :func:`read_ids_file` instead resolves only the names
``np.save`` writes for such a dict (:data:`NAMES`; NumPy 1.x and 2.x, pickle
protocols 0-5), each to a :class:`_Stub` that calls nothing and records its
arguments; it uses the pure-Python unpickler, whose memo is a dict (the C one
allocates memory in proportion to a memo index the file gives); and it reads
the records as one shape only: a 0-d object array holding a dict from person
id (int, NumPy integer, digit string) to a flat list or tuple of ints or a 1-D
integer array, with at most one index per byte of the file, counted before
any is made (so lists shared between persons cannot expand a small file).
Anything else is refused with one line naming the file.
"""

from __future__ import annotations

import pathlib
import pickle
import re
import reprlib

import numpy as np

from sge_jax.data import input_files
from sge_jax.errors import DataError

# Far above any real ids file (~5 bytes per sequence index).
MAX_FILE_BYTES = 64 * 2**20
_CORES = ('numpy.core', 'numpy._core')  # NumPy 1.x, 2.x
# (module, name) np.save writes -> what it stands for here.
NAMES = {('numpy', 'ndarray'): 'ndarray', ('numpy', 'dtype'): 'dtype',
         ('_codecs', 'encode'): 'encode',  # bytes, protocols 0-2
         ('__builtin__', 'bytes'): 'bytes', ('builtins', 'bytes'): 'bytes',
         **{(f'{c}.multiarray', '_reconstruct'): 'reconstruct' for c in _CORES},
         **{(f'{c}.multiarray', 'scalar'): 'scalar' for c in _CORES},
         **{(f'{c}.numeric', '_frombuffer'): 'frombuffer' for c in _CORES}}


class _Refused(Exception):
  """Why the file is refused; becomes a DataError naming the file."""


class _Stub:
  """An accepted name (``args`` None) or a recorded call of it, BUILD state."""

  def __init__(self, name: str, args: tuple | None = None):
    self.name, self.args, self.state = name, args, None

  def __call__(self, *args) -> '_Stub':
    return _Stub(self.name, args)

  def __setstate__(self, state):
    if self.state is not None:
      raise _Refused(f'sets the state of a {self.name} twice')
    self.state = state


class _Unpickler(pickle._Unpickler):  # pylint: disable=protected-access

  def find_class(self, module, name):
    if (module, name) not in NAMES:
      raise _Refused(f'names {module}.{name}')
    return _Stub(NAMES[(module, name)])


def read_ids_file(path: str | pathlib.Path) -> dict[int, list[int]]:
  """Person id -> sequence indices of an ids file; nothing in it runs.

  Raises:
    DataError: one line naming ``path``: "refused to load" for anything but
      ``np.save`` of such a dict, "Cannot read" for a damaged file.
  """
  path = input_files.require_regular_file(path, 'ids file')
  try:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
      raise _Refused(f'is {size} bytes, more than {MAX_FILE_BYTES} (an ids '
                     'file needs about 5 per sequence)')
    with open(path, 'rb') as file:
      shape, dtype = input_files.read_header(file)
      if dtype != np.dtype(object) or shape != ():
        raise _Refused(f'holds a {dtype} array of shape {shape}, not a '
                       'pickled dict')
      return _ids(_Unpickler(file, encoding='latin1').load(), budget=size)
  except _Refused as refusal:
    raise DataError(_one_line(
        f'{path}: refused to load: the ids file {refusal}; an ids file holds '
        'only a dict person id -> flat list of sequence indices (np.save of '
        'such a dict): download or rebuild it.')) from None
  except Exception as error:  # pylint: disable=broad-except
    raise DataError(_one_line(
        f'Cannot read {path}: {type(error).__name__}: {error}. The file is '
        'corrupt or not a .npy file; download or rebuild it.')) from None


def _ids(top, budget: int) -> dict[int, list[int]]:
  """The checked dict in the 0-d object array np.save wraps around it."""
  shape, dtype, data = _array(top)
  if not (dtype == object and shape == () and type(data) is list
          and len(data) == 1 and type(data[0]) is dict):
    raise _Refused(f'holds a {dtype} array of shape {reprlib.repr(shape)}, '
                   'not a dict')
  ids = {}
  for key, value in data[0].items():
    person = _person(key)
    if type(value) in (list, tuple):
      count, indices = len(value), value
    else:
      shape, dtype, data = _array(value)
      data = _bytes(data) if dtype.kind in 'iu' else b''
      if not (dtype.kind in 'iu' and type(shape) is tuple and len(shape) == 1
              and type(shape[0]) is int
              and len(data) == shape[0] * dtype.itemsize):
        raise _Refused(f'maps person {person} to a {dtype} array of shape '
                       f'{reprlib.repr(shape)} ({len(data)} bytes)')
      count, indices = shape[0], np.frombuffer(data, dtype)  # not copied yet
    budget -= count  # counted before the indices are made
    if budget < 0:
      raise _Refused('lists more sequence indices than it has bytes')
    ids[person] = [_integer(item, 'a sequence index') for item in indices]
  return ids


def _person(key) -> int:
  if type(key) is str and re.fullmatch(r'-?\d{1,18}', key.strip()):
    return int(key)
  if type(key) is str:
    raise _Refused(f'has a person id {reprlib.repr(key)} that is not an integer')
  return _integer(key, 'a person id')


def _array(value) -> tuple:
  """(shape, dtype, data) of ``_reconstruct(ndarray, ...)`` with its BUILD
  state, or of ``_frombuffer(data, dtype, shape, order)`` (protocol 5)."""
  if _called(value, 'frombuffer', 4):
    data, dtype, shape, _ = value.args
    return shape, _dtype(dtype), data
  if not (_called(value, 'reconstruct', 3) and _called(value.args[0],
                                                        'ndarray', None)):
    raise _Refused(f'holds a {_kind(value)} where an array belongs')
  state = value.state
  if type(state) is tuple and len(state) == 5:
    state = state[1:]  # (version, shape, dtype, fortran order, data)
  if not (type(state) is tuple and len(state) == 4):
    raise _Refused('holds an array whose contents are missing or malformed')
  shape, dtype, _, data = state
  return shape, _dtype(dtype), data


def _dtype(value) -> np.dtype:
  """The integer or object dtype of ``numpy.dtype(spec, ...)`` and its BUILD."""
  spec = value.args[0] if _called(value, 'dtype', 3) else None
  if not (type(spec) is str and re.fullmatch(r'[iu][1248]|O[48]', spec)
          and type(value.state) is tuple and len(value.state) > 1
          and value.state[1] in ('<', '>', '=', '|')):
    raise _Refused(f'holds a dtype {str(spec)[:20]!r}, not an integer one')
  return np.dtype(spec).newbyteorder(value.state[1].replace('|', '='))


def _integer(value, what: str) -> int:
  if type(value) is int or isinstance(value, np.integer):
    return int(value)
  if _called(value, 'scalar', 2):  # a NumPy integer such as np.int64(3)
    dtype, data = _dtype(value.args[0]), _bytes(value.args[1])
    if dtype.kind in 'iu' and len(data) == dtype.itemsize:
      return int(np.frombuffer(data, dtype)[0])
  raise _Refused(f'has {what} that is a {_kind(value)}')


def _bytes(value) -> bytes:
  """Array data: bytes, or as protocols 0-2 write it (latin-1 text, bytes())."""
  if type(value) in (bytes, bytearray):
    return bytes(value)
  if type(value) is str:  # a Python 2 pickle's str, read as latin-1
    return value.encode('latin-1')
  if _called(value, 'encode', 2) and type(value.args[0]) is str and (
      value.args[1] in ('latin1', 'latin-1')):
    return value.args[0].encode('latin-1')
  if _called(value, 'bytes', 0):
    return b''
  raise _Refused(f'holds array data that is a {_kind(value)}')


def _called(value, name: str, num_args: int | None) -> bool:
  """Whether ``value`` records ``name(<num_args args>)`` (None: ``name``)."""
  return type(value) is _Stub and value.name == name and (
      num_args is None if value.args is None else len(value.args) == num_args)


def _kind(value) -> str:
  return f'numpy {value.name}' if type(value) is _Stub else type(value).__name__


def _one_line(text: str) -> str:
  return text.replace('\r', ' ').replace('\n', ' ')
