"""Reads a pickled .npy file (the authors' ids files) without running code from it.

An ids file ``ids_<TAG>_<f>.npy`` is ``np.save(path, {person: [indices]})``: a .npy
header saying "object array of shape ()" followed by a pickle of that array.
``np.load(path, allow_pickle=True)`` would run whatever callable the pickle names
(``os.system``, ``builtins.exec``, ...) before any check could look at the result,
so :func:`load_npy_safely` reads such files differently:

1. The header is parsed with ``numpy.lib.format`` (``read_magic``,
   ``read_array_header_1_0``/``_2_0``, which use ``ast.literal_eval``). A file
   whose dtype holds no objects contains no pickle and is read with
   ``np.load(path, allow_pickle=False)``; a structured dtype with object fields
   is refused.
2. The pickle is read by an unpickler whose ``find_class`` resolves only the
   names in :data:`ALLOWED_GLOBALS`, and never to the real NumPy functions:
   each NumPy name maps to a small stand-in here that records its arguments.
   The file's bytes therefore never reach ``ndarray.__setstate__`` or
   ``dtype.__setstate__`` (the usual gadgets for abusing "allowed" NumPy names).
3. After unpickling, the stand-ins are turned into real arrays and scalars,
   checking on the way that every NumPy dtype is a plain integer dtype
   (``[iu][1248]``, any byte order); the only object array allowed is the
   top-level one that ``np.save`` wraps around the dict.

The names ``np.save`` writes (checked with ``pickletools`` on files from NumPy
1.26 and 2.x, protocols 0-5):

* NumPy 1.x: ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``,
  ``numpy.dtype``, ``numpy.core.multiarray.scalar`` (NumPy scalars such as
  ``np.int64`` in the lists), ``numpy.core.numeric._frombuffer`` (protocol 5).
* NumPy 2.x: the same under ``numpy._core``.
* Protocols 0-2 add ``_codecs.encode`` (bytes as latin-1 text) and
  ``__builtin__.bytes`` (empty bytes).
* ``builtins``/``__builtin__`` ``dict``, ``list``, ``tuple``, ``int``, ``str`` are
  accepted as well (plain pickles build these with opcodes, not names).

Both spellings of the NumPy module names are accepted whatever NumPy is
installed, since nothing is imported. Everything else is refused with a
:class:`~sge_jax.errors.DataError` naming the file and what was refused. The
result equals what ``np.load(path, allow_pickle=True)`` returns for every
legitimate file (arrays come back writable and with their byte order and memory
order), except that Python 2 byte strings are decoded as latin-1 where
``np.load`` would fail on non-ASCII ones.
"""

from __future__ import annotations

import io
import math
import pathlib
import pickle
import re
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from sge_jax.errors import DataError

ACCEPTED = 'only dict/list/tuple/int/str and integer numpy arrays are accepted'

# Deeper nesting than this is refused (an ids file is two levels deep).
MAX_DEPTH = 32


class _Refused(Exception):
  """A reason to refuse the file; turned into a DataError naming the file."""


# ------------------------------------------------------------------ stand-ins


class _NdarrayName:
  """What ``numpy.ndarray`` resolves to: only a marker for ``_reconstruct``."""

  def __repr__(self):
    return 'numpy.ndarray'


_NDARRAY = _NdarrayName()

_INTEGER_SPEC = re.compile(r'[iu][1248]')
_OBJECT_SPEC = re.compile(r'O[48]')


class _DtypeStub:
  """Stands in for ``numpy.dtype(spec, align, copy)`` plus its ``__setstate__``."""

  __hash__ = None  # unhashable, so it can never hide in a dict key or a set

  def __init__(self, spec, align=False, copy=True):
    del align, copy  # meaningless for the integer and object dtypes accepted
    if not isinstance(spec, str):
      raise _Refused(f'holds a numpy dtype built from a {type(spec).__name__}')
    if not (_INTEGER_SPEC.fullmatch(spec) or _OBJECT_SPEC.fullmatch(spec)):
      raise _Refused(f'holds numpy dtype {_describe_spec(spec)}')
    self.spec = spec
    self.byteorder = None  # set by __setstate__

  def __setstate__(self, state):
    if self.byteorder is not None:
      raise _Refused('holds a numpy dtype whose state is set twice')
    if not (isinstance(state, tuple) and len(state) in (8, 9)
            and state[0] in (3, 4)):
      raise _Refused(f'holds a numpy dtype state of an unknown form '
                     f'({_short_repr(state)})')
    byteorder, subarray, names, fields = state[1:5]
    if byteorder not in ('<', '>', '=', '|'):
      raise _Refused(f'holds a numpy dtype with byte order {byteorder!r}')
    if subarray is not None or names is not None or fields is not None:
      raise _Refused('holds a structured or sub-array numpy dtype')
    if len(state) == 9 and state[8] not in (None, {}):
      raise _Refused('holds a numpy dtype with metadata')
    self.byteorder = byteorder

  def resolve(self, allow_object: bool) -> np.dtype:
    if self.byteorder is None:
      raise _Refused('holds a numpy dtype used before its state is set')
    if _OBJECT_SPEC.fullmatch(self.spec):
      if not allow_object:
        raise _Refused('holds an object array inside the outer one that '
                       'np.save writes')
      return np.dtype(object)
    dtype = np.dtype(self.spec)
    if self.byteorder in '<>':
      dtype = dtype.newbyteorder(self.byteorder)
    return dtype


class _ArrayStub:
  """Stands in for ``numpy.core.multiarray._reconstruct(ndarray, ...)``.

  Its ``__setstate__`` only records (shape, dtype, Fortran order, data); the real
  array is made by :func:`_materialize` once the whole pickle is read.
  """

  __hash__ = None

  def __init__(self):
    self.state = None

  def __setstate__(self, state):
    if self.state is not None:
      raise _Refused('holds a numpy array whose contents are set twice')
    if isinstance(state, tuple) and len(state) == 5:
      state = state[1:]  # (version, shape, dtype, is_fortran, data)
    if not (isinstance(state, tuple) and len(state) == 4):
      raise _Refused(f'holds a numpy array state of an unknown form '
                     f'({_short_repr(state)})')
    shape, dtype, fortran, data = state
    _check_shape(shape)
    if not isinstance(dtype, _DtypeStub):
      raise _Refused(f'holds a numpy array with dtype {_short_repr(dtype)}')
    if not isinstance(fortran, int):
      raise _Refused('holds a numpy array with a malformed memory-order flag')
    if _OBJECT_SPEC.fullmatch(dtype.spec):
      if not isinstance(data, list) or len(data) != math.prod(shape):
        raise _Refused('holds an object array whose contents are not a list of '
                       'its elements')
    else:
      data = _as_bytes(data)
    self.state = (shape, dtype, bool(fortran), data)


def _dtype(spec, align=False, copy=True):
  """``numpy.dtype``; a function, so that NEWOBJ cannot skip ``__init__``."""
  return _DtypeStub(spec, align, copy)


def _reconstruct(subtype, shape, typecode):
  """``numpy.core.multiarray._reconstruct``: an empty array to be filled by BUILD."""
  del shape, typecode  # the BUILD state that follows gives the real ones
  if subtype is not _NDARRAY:
    raise _Refused(f'holds an array of type {_short_repr(subtype)} instead of '
                   'numpy.ndarray')
  return _ArrayStub()


def _frombuffer(buffer, dtype, shape, order):
  """``numpy.core.numeric._frombuffer`` (protocol 5): an integer array at once."""
  if not isinstance(dtype, _DtypeStub):
    raise _Refused(f'holds a numpy array with dtype {_short_repr(dtype)}')
  _check_shape(shape)
  if order not in ('C', 'F'):
    raise _Refused(f'holds a numpy array with memory order {order!r}')
  return _integer_array(_as_bytes(buffer), dtype.resolve(allow_object=False),
                        shape, fortran=order == 'F')


def _scalar(dtype, data):
  """``numpy.core.multiarray.scalar``: a NumPy integer scalar such as np.int64."""
  if not isinstance(dtype, _DtypeStub):
    raise _Refused(f'holds a numpy scalar of {_short_repr(dtype)}')
  resolved = dtype.resolve(allow_object=False)
  data = _as_bytes(data)
  if len(data) != resolved.itemsize:
    raise _Refused(f'holds a {resolved} scalar of {len(data)} bytes')
  return np.frombuffer(data, dtype=resolved)[0]


def _codecs_encode(text, encoding='utf-8', errors='strict'):
  """``_codecs.encode`` as protocols 0-2 use it: bytes written as latin-1 text."""
  if not (isinstance(text, str) and isinstance(encoding, str)
          and encoding.lower().replace('_', '-') in ('latin1', 'latin-1',
                                                     'iso-8859-1', 'iso8859-1')
          and errors == 'strict'):
    raise _Refused('holds a _codecs.encode call other than latin-1 text to '
                   'bytes')
  return text.encode('latin-1')


def _bytes(*args):
  """``builtins.bytes`` as protocols 0-2 use it: ``bytes()`` for empty bytes."""
  if not args:
    return b''
  if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
    return bytes(args[0])
  raise _Refused('holds a bytes() call with arguments other than bytes')


def _allowed_globals() -> dict[tuple[str, str], Any]:
  allowed: dict[tuple[str, str], Any] = {}
  for module in ('builtins', '__builtin__'):  # __builtin__: protocols 0-2
    for value in (dict, list, tuple, int, str):
      allowed[(module, value.__name__)] = value
    allowed[(module, 'bytes')] = _bytes
  allowed[('_codecs', 'encode')] = _codecs_encode
  allowed[('numpy', 'ndarray')] = _NDARRAY
  allowed[('numpy', 'dtype')] = _dtype
  for core in ('numpy.core', 'numpy._core'):  # NumPy 1.x, 2.x
    allowed[(f'{core}.multiarray', '_reconstruct')] = _reconstruct
    allowed[(f'{core}.multiarray', 'scalar')] = _scalar
    allowed[(f'{core}.numeric', '_frombuffer')] = _frombuffer
  return allowed


# (module, name) -> what it resolves to. Nothing here is the real NumPy callable.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = _allowed_globals()


class _RestrictedUnpickler(pickle.Unpickler):

  def find_class(self, module, name):
    try:
      return ALLOWED_GLOBALS[(module, name)]
    except (KeyError, TypeError):
      raise _Refused(f'references {module}.{name}') from None

  def persistent_load(self, pid):
    raise _Refused('holds a pickle persistent id')


# ---------------------------------------------------------------- converting


def _materialize(value: Any, depth: int, memo: dict[int, Any],
                 in_progress: set[int]) -> Any:
  """The unpickled value with stand-ins replaced by real arrays, all checked."""
  if isinstance(value, (bool, int, float, complex, str, bytes, type(None))):
    return value
  if isinstance(value, np.integer):
    return value
  key = id(value)
  if key in memo:
    return memo[key]
  if key in in_progress:
    raise _Refused('holds a container that contains itself')
  if depth > MAX_DEPTH:
    raise _Refused(f'holds containers nested more than {MAX_DEPTH} levels deep')
  in_progress.add(key)
  convert = lambda item: _materialize(item, depth + 1, memo, in_progress)
  if type(value) is dict:
    result = {convert(k): convert(v) for k, v in value.items()}
  elif type(value) is list:
    result = [convert(item) for item in value]
  elif type(value) is tuple:
    result = tuple(convert(item) for item in value)
  elif type(value) in (set, frozenset):
    result = type(value)(convert(item) for item in value)
  elif type(value) is bytearray:
    result = value
  elif isinstance(value, np.ndarray):  # from _frombuffer: integer, checked
    result = value
  elif isinstance(value, _ArrayStub):
    if value.state is None:
      raise _Refused('holds a numpy array whose contents are never set')
    shape, dtype, fortran, data = value.state
    if isinstance(data, list):
      result = _object_array(shape, dtype.resolve(allow_object=depth == 0),
                             fortran, [convert(item) for item in data])
    else:
      result = _integer_array(data, dtype.resolve(allow_object=False), shape,
                              fortran)
      # ndarray.__setstate__ turns byte-swapped data into native byte order.
      result = result.astype(result.dtype.newbyteorder('='), copy=False)
  elif isinstance(value, _DtypeStub):
    raise _Refused('holds a bare numpy dtype')
  else:
    raise _Refused(f'holds {_short_repr(value)}')
  in_progress.discard(key)
  memo[key] = result
  return result


def _integer_array(data: bytes, dtype: np.dtype, shape: tuple,
                   fortran: bool) -> np.ndarray:
  if not np.issubdtype(dtype, np.integer):  # _DtypeStub.resolve ensures it
    raise _Refused(f'holds a numpy array of dtype {dtype}')
  if len(data) != math.prod(shape) * dtype.itemsize:
    raise _Refused(f'holds a {dtype} array of shape {shape} with {len(data)} '
                   'bytes of data')
  flat = np.frombuffer(data, dtype=dtype)
  return flat.reshape(shape, order='F' if fortran else 'C').copy(order='K')


def _object_array(shape: tuple, dtype: np.dtype, fortran: bool,
                  items: list) -> np.ndarray:
  del dtype  # object, checked by the caller
  flat = np.empty(len(items), dtype=object)
  for position, item in enumerate(items):  # item by item: lists stay lists
    flat[position] = item
  return flat.reshape(shape, order='F' if fortran else 'C')


def _check_shape(shape) -> None:
  if not (isinstance(shape, tuple)
          and all(type(n) is int and n >= 0 for n in shape)
          and len(shape) <= 32):
    raise _Refused(f'holds a numpy array of shape {_short_repr(shape)}')


def _as_bytes(data) -> bytes:
  if isinstance(data, bytes):
    return data
  if isinstance(data, bytearray):
    return bytes(data)
  if isinstance(data, str):  # Python 2 pickles: str read as latin-1
    return data.encode('latin-1')
  raise _Refused(f'holds a numpy array with data {_short_repr(data)}')


def _describe_spec(spec: str) -> str:
  """'float64 ('f8')' for simple type codes; only the code for anything else."""
  if re.fullmatch(r'[A-Za-z?]\d{1,3}(\[[A-Za-z0-9]{1,4}\])?', spec):
    try:
      return f'{np.dtype(spec)} ({spec!r})'
    except TypeError:
      pass
  return _short_repr(spec)


def _short_repr(value: Any) -> str:
  if isinstance(value, (_ArrayStub, _DtypeStub)):
    return 'a numpy ' + ('array' if isinstance(value, _ArrayStub) else 'dtype')
  if callable(value):
    name = getattr(value, '__qualname__', None) or type(value).__name__
    return f'the callable {name} itself'
  text = repr(value) if isinstance(value, (tuple, str, int, type(None))) else (
      f'a {type(value).__name__}')
  return text if len(text) <= 60 else text[:57] + '...'


# ------------------------------------------------------------------ loading


def load_npy_safely(path: str | pathlib.Path, kind: str = 'ids file') -> Any:
  """What ``np.load(path, allow_pickle=True)`` returns, without running code.

  Args:
    path: a .npy file. Without objects in its dtype it is read with
      ``np.load(path, allow_pickle=False)``; an object array is unpickled with
      the restricted unpickler described in the module docstring.
    kind: what the file is, for the messages ("ids file").

  Returns:
    A NumPy array; for ``np.save(path, some_dict)`` the 0-d object array
    holding the dict (``.item()`` gives it).

  Raises:
    DataError: one line naming ``path``: "refused to load: ..." when the pickle
      names anything outside :data:`ALLOWED_GLOBALS` or holds a non-integer
      NumPy array or scalar, "Cannot read ..." when the file is corrupt.
  """
  path = pathlib.Path(path)
  try:
    with open(path, 'rb') as file:
      version = npy_format.read_magic(file)
      if version == (1, 0):
        shape, _, dtype = npy_format.read_array_header_1_0(file)
      elif version == (2, 0):
        shape, _, dtype = npy_format.read_array_header_2_0(file)
      else:  # 3.0 (utf-8 header) is never written for object arrays
        shape, dtype = None, None
      payload = file.read() if dtype is not None and dtype.hasobject else None
  except Exception as error:  # pylint: disable=broad-except
    raise _unreadable(path, error) from error

  if dtype is None or not dtype.hasobject:
    try:
      return np.load(path, allow_pickle=False)
    except Exception as error:  # pylint: disable=broad-except
      raise _unreadable(path, error) from error
  if dtype != np.dtype(object):
    raise _refused(path, kind, f'holds a structured dtype with objects ({dtype})')

  try:
    unpickler = _RestrictedUnpickler(io.BytesIO(payload), encoding='latin1')
    value = unpickler.load()
    if not isinstance(value, _ArrayStub):
      raise ValueError(f'the header promises an object array of shape {shape}, '
                       f'the pickle holds {_short_repr(value)}')
    result = _materialize(value, 0, {}, set())
  except _Refused as refusal:
    raise _refused(path, kind, str(refusal)) from None
  except RecursionError as error:
    raise _refused(path, kind, 'holds containers nested too deeply') from error
  except Exception as error:  # pylint: disable=broad-except
    raise _unreadable(path, error) from error
  if result.dtype != object or result.shape != shape:
    raise _unreadable(path, ValueError(
        f'the header promises an object array of shape {shape}, the pickle '
        f'holds a {result.dtype} array of shape {result.shape}'))
  return result


def _refused(path: pathlib.Path, kind: str, reason: str) -> DataError:
  article = 'an' if kind[:1].lower() in 'aeiou' else 'a'
  return DataError(_one_line(
      f'{path}: refused to load: the {kind} {reason}, which {article} {kind} '
      f'never holds ({ACCEPTED}).'))


def _unreadable(path: pathlib.Path, error: BaseException) -> DataError:
  return DataError(_one_line(
      f'Cannot read {path}: {type(error).__name__}: {error}. The file is corrupt '
      'or not a .npy file; download or rebuild it.'))


def _one_line(text: str) -> str:
  return text.replace('\r', ' ').replace('\n', ' ')
