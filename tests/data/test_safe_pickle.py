"""Pickled ids files are read without running code from them (sge_jax.data.safe_pickle).

Legitimate files (np.save of a dict of index lists/arrays, any pickle protocol,
NumPy 1.x or 2.x names) load to exactly what ``np.load(allow_pickle=True)`` gives;
a file naming any other callable, or abusing the accepted NumPy names to build
object/float/structured arrays, is refused with a one-line DataError naming the
file, and its payload never runs.
"""

import base64
import builtins
import codecs
import os
import pathlib
import re
import pickle

import numpy as np
from numpy.lib import format as npy_format
import pytest

from tests.fixtures.data import write_dataset
from sge_jax.data import authors_layout
from sge_jax.data.authors_layout import load_authors_dataset
from sge_jax.data.safe_pickle import ALLOWED_GLOBALS, load_npy_safely
from sge_jax.errors import DataError

PROTOCOLS = list(range(pickle.HIGHEST_PROTOCOL + 1))  # 0..5
WRITERS = ['np.save'] + PROTOCOLS

# The real NumPy callables that np.save's pickles name, whatever NumPy runs here.
_RECONSTRUCT = np.zeros(1).__reduce__()[0]
_SCALAR = np.int64(1).__reduce__()[0]
_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]


def _write(path, value, protocol='np.save'):
  """``np.save(path, value)``, or its header plus a pickle of the given protocol."""
  if protocol == 'np.save':
    np.save(path, value, allow_pickle=True)
    return path
  wrapped = np.empty((), dtype=object)
  wrapped[()] = value
  with open(path, 'wb') as file:
    npy_format.write_array_header_1_0(
        file, npy_format.header_data_from_array_1_0(wrapped))
    pickle.dump(wrapped, file, protocol=protocol)
  return path


def _write_raw(path, top_level, protocol):
  """An object-array header followed by a pickle of ``top_level`` itself."""
  with open(path, 'wb') as file:
    npy_format.write_array_header_1_0(
        file, {'descr': '|O', 'fortran_order': False, 'shape': ()})
    pickle.dump(top_level, file, protocol=protocol)
  return path


def _same(a, b):
  """Equal values of equal types; arrays also in dtype, shape, layout, writability."""
  if type(a) is not type(b):
    return False
  if isinstance(a, dict):
    return (len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
            and all(_same(a[k], b[k]) for k in a))
  if isinstance(a, (list, tuple)):
    return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
  if isinstance(a, np.ndarray):
    if a.dtype != b.dtype or a.shape != b.shape:
      return False
    if a.dtype == object:
      return all(_same(x, y) for x, y in zip(a.ravel(), b.ravel()))
    return (np.array_equal(a, b) and a.flags.writeable == b.flags.writeable
            and a.flags.c_contiguous == b.flags.c_contiguous
            and a.flags.f_contiguous == b.flags.f_contiguous)
  if isinstance(a, np.generic):
    return a.dtype == b.dtype and a == b
  return a == b


def _refusal(path):
  with pytest.raises(DataError) as error:
    load_npy_safely(path)
  message = str(error.value)
  assert '\n' not in message
  assert message.startswith(f'{path}: refused to load: the ids file ')
  assert 'integer numpy arrays are accepted' in message
  return message


# ------------------------------------------------------------- legitimate files


LEGITIMATE = {
    'python ints': {0: [0, 2, 5], 3: [1], 9: [3, 4]},
    'numpy int64 values': {1: [np.int64(0), np.int64(2)], 2: [np.int64(1)]},
    'numpy int keys': {np.int64(1): [0], np.int32(2): [1], np.uint8(7): []},
    'index arrays': {1: np.array([0, 2]), 2: np.array([1], dtype=np.int32),
                     3: np.array([], dtype=np.int64),
                     4: np.array([3, 4], dtype=np.uint16)},
    'str keys': {'1': [0, 2], '2': (1,), '3': []},
    'odd arrays': {1: np.arange(10)[::3],
                   2: np.asfortranarray(np.arange(6).reshape(2, 3)),
                   3: np.array([1, 2], dtype='>i8'),
                   4: np.arange(3000, dtype='<u4')},   # > 1000 bytes of data
    'empty dict': {},
}


@pytest.mark.parametrize('protocol', WRITERS)
@pytest.mark.parametrize('name', list(LEGITIMATE))
def test_legitimate_files_load_like_np_load(tmp_path, name, protocol):
  path = _write(tmp_path / 'ids_X_6.npy', LEGITIMATE[name], protocol)
  expected = np.load(path, allow_pickle=True)
  loaded = load_npy_safely(path)
  assert _same(loaded, expected)
  assert loaded.shape == () and loaded.dtype == object
  assert _same(loaded.item(), expected.item())


# np.save({3: [0, 2], 7: [np.int64(1)], 9: np.array([3, 4], dtype=np.int32)}) by
# NumPy 1.26.4 (protocol 3, names under numpy.core rather than numpy._core).
_NUMPY_1_26_FILE = base64.b64decode(
    'k05VTVBZAQB2AHsnZGVzY3InOiAnfE8nLCAnZm9ydHJhbl9vcmRlcic6IEZhbHNlLCAnc2hhcGUn'
    'OiAoKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg'
    'ICAgICAgICAgICAgIAqAA2NudW1weS5jb3JlLm11bHRpYXJyYXkKX3JlY29uc3RydWN0CnEAY251'
    'bXB5Cm5kYXJyYXkKcQFLAIVxAkMBYnEDh3EEUnEFKEsBKWNudW1weQpkdHlwZQpxBlgCAAAATzhx'
    'B4mIh3EIUnEJKEsDWAEAAAB8cQpOTk5K/////0r/////Sz90cQtiiV1xDH1xDShLA11xDihLAEsC'
    'ZUsHXXEPY251bXB5LmNvcmUubXVsdGlhcnJheQpzY2FsYXIKcRBoBlgCAAAAaThxEYmIh3ESUnET'
    'KEsDWAEAAAA8cRROTk5K/////0r/////SwB0cRViQwgBAAAAAAAAAHEWhnEXUnEYYUsJaABoAUsA'
    'hXEZaAOHcRpScRsoSwFLAoVxHGgGWAIAAABpNHEdiYiHcR5ScR8oSwNoFE5OTkr/////Sv////9L'
    'AHRxIGKJQwgDAAAABAAAAHEhdHEiYnVhdHEjYi4=')


def test_file_written_by_numpy_1_26(tmp_path):
  assert b'numpy.core.multiarray' in _NUMPY_1_26_FILE
  path = tmp_path / 'ids_X_6.npy'
  path.write_bytes(_NUMPY_1_26_FILE)
  ids = load_npy_safely(path).item()
  assert _same(ids, {3: [0, 2], 7: [np.int64(1)],
                     9: np.array([3, 4], dtype=np.int32)})


def test_accepted_names_are_both_numpy_spellings_and_plain_builtins():
  names = {f'{module}.{name}' for module, name in ALLOWED_GLOBALS}
  for core in ('numpy.core', 'numpy._core'):
    assert {f'{core}.multiarray._reconstruct', f'{core}.multiarray.scalar',
            f'{core}.numeric._frombuffer'} <= names
  assert {'numpy.ndarray', 'numpy.dtype', 'builtins.dict', 'builtins.list',
          '_codecs.encode'} <= names
  assert not {'builtins.eval', 'builtins.exec', 'builtins.getattr', 'io.open',
              'posix.system', 'os.system', 'numpy.load', 'numpy.frombuffer',
              'builtins.__import__'} & names


# ---------------------------------------------------------------- code payloads


class _Payload:
  """Pickles as a call of ``function(*args)``: what a crafted file would run."""

  def __init__(self, function, *args):
    self.function, self.args = function, args

  def __reduce__(self):
    return self.function, self.args


def _payloads(marker):
  code = f'open({str(marker)!r}, "w").write("ran")'
  return {
      'os.system': _Payload(os.system, f'touch {marker}'),
      'builtins.exec': _Payload(exec, code),
      'builtins.eval': _Payload(eval, code),
      'open': _Payload(builtins.open, str(marker), 'w'),
      'getattr': _Payload(getattr, (), '__class__'),
      '__import__': _Payload(__import__, 'os'),
  }


def _qualified(function, protocol='np.save'):
  """The name a pickle of ``protocol`` gives ``function`` (fix_imports below 3)."""
  module = function.__module__
  if module == 'builtins' and protocol in (0, 1, 2):
    module = '__builtin__'
  return f'{module}.{function.__qualname__}'


@pytest.mark.parametrize('protocol', WRITERS)
@pytest.mark.parametrize('kind', ['os.system', 'builtins.exec', 'builtins.eval',
                                  'open', 'getattr', '__import__'])
def test_code_payload_in_the_dict_is_refused_and_never_runs(tmp_path, kind,
                                                            protocol):
  marker = tmp_path / 'marker'
  payload = _payloads(marker)[kind]
  path = _write(tmp_path / 'ids_X_6.npy', {1: [0, 1], 2: payload}, protocol)
  message = _refusal(path)
  assert f'references {_qualified(payload.function, protocol)}' in message
  assert 'which an ids file never holds' in message
  assert not marker.exists()


@pytest.mark.parametrize('protocol', PROTOCOLS)
def test_code_payload_as_the_whole_pickle_is_refused(tmp_path, protocol):
  marker = tmp_path / 'marker'
  path = _write_raw(tmp_path / 'ids_X_6.npy',
                    _Payload(os.system, f'touch {marker}'), protocol)
  assert f'references {_qualified(os.system)}' in _refusal(path)
  assert not marker.exists()


def test_payload_through_the_authors_loader(tmp_path):
  write_dataset(tmp_path / 'KGBD' / '6', 'KGBD', 6, 20, test_tags=['KGBD'])
  marker = tmp_path / 'marker'
  path = tmp_path / 'KGBD' / '6' / 'KGBD_train_npy_data' / 'ids_KGBD_6.npy'
  _write(path, {0: _Payload(os.system, f'touch {marker}')})
  with pytest.raises(DataError) as error:
    load_authors_dataset(tmp_path, 'KGBD', 6)
  assert str(error.value).startswith(f'{path}: refused to load:')
  assert not marker.exists()


# ------------------------------------------- accepted names, abused contents


class _Reduce:
  """Pickles as ``function(*args)`` followed by BUILD with ``state``."""

  def __init__(self, function, args, state=None):
    self.function, self.args, self.state = function, args, state

  def __reduce__(self):
    if self.state is None:
      return self.function, self.args
    return self.function, self.args, self.state


def _forged_array(dtype, data, shape=(2,)):
  """What ndarray.__reduce__ writes, with any dtype and raw data."""
  return _Reduce(_RECONSTRUCT, (np.ndarray, (0,), b'b'),
                 (1, shape, dtype, False, data))


def _forged_dtype(spec, state):
  return _Reduce(np.dtype, (spec, False, True), state)


ABUSES = {
    'float array': ({1: np.array([0.0, 1.0])}, 'float64'),
    'float scalar': ({1: [np.float64(1.0)]}, 'float64'),
    'bool array': ({1: np.array([True, False])}, 'bool'),
    'complex array': ({1: np.array([1j])}, 'complex128'),
    'structured array': ({1: np.zeros(2, dtype=[('a', 'i8')])}, 'numpy dtype'),
    'datetime array': ({1: np.array([1], dtype='M8[s]')}, 'numpy dtype'),
    'object array inside': ({1: np.array([[0], 'x'], dtype=object)},
                            'object array inside'),
    'object scalar': ({1: [_Reduce(_SCALAR, (np.dtype(object), [0]))]},
                      'object array inside'),
    'masked array subclass': ({1: np.ma.masked_array([0, 1])},
                              'references numpy.ma.core'),
    'object array from raw bytes (pointer forgery)': (
        {1: _forged_array(np.dtype(object), b'\x41' * 16)},
        'object array whose contents are not a list'),
    'wrong data length': ({1: _forged_array(np.dtype('i8'), b'\0' * 15)},
                          'with 15 bytes of data'),
    'structured dtype state': ({1: _forged_array(_forged_dtype(
        'i8', (3, '<', None, ('a',), {'a': (np.dtype(object), 0)}, 8, 1, 63)),
                                                 b'\0' * 16)},
                               'structured or sub-array numpy dtype'),
    'void dtype by name': ({1: _forged_array(_forged_dtype(
        'V16', (3, '|', None, None, None, 16, 1, 0)), b'\0' * 32)},
                           'numpy dtype'),
    'reconstruct of a dict': ({1: _Reduce(_RECONSTRUCT, (dict, (0,), b'b'))},
                              'instead of numpy.ndarray'),
    'float frombuffer': ({1: _Reduce(_FROMBUFFER, (
        b'\0' * 8, np.dtype('f8'), (1,), 'C'))},
                         'float64'),
    'codec other than latin-1': ({1: _Reduce(codecs.encode, ('x', 'rot13'))},
                                 '_codecs.encode'),
    'an accepted callable as a value': ({1: dict}, 'the callable dict itself'),
    'array never filled': ({1: _Reduce(_RECONSTRUCT, (np.ndarray, (0,), b'b'))},
                           'contents are never set'),
}


@pytest.mark.parametrize('protocol', [2, 'np.save', 5])
@pytest.mark.parametrize('name', list(ABUSES))
def test_accepted_names_with_abused_contents_are_refused(tmp_path, name,
                                                         protocol):
  value, expected = ABUSES[name]
  path = _write(tmp_path / 'ids_X_6.npy', value, protocol)
  assert expected in _refusal(path)


def test_self_containing_and_deeply_nested_values_are_refused(tmp_path):
  loop = [0]
  loop.append(loop)
  assert 'contains itself' in _refusal(_write(tmp_path / 'a.npy', {1: loop}))
  deep = [0]
  for _ in range(100):
    deep = [deep]
  assert 'nested more than' in _refusal(_write(tmp_path / 'b.npy', {1: deep}))


# ---------------------------------------------------------------- malformed


@pytest.mark.parametrize('keep', [0, 5, 60, 130, 200, -1])
def test_truncated_file(tmp_path, keep):
  path = _write(tmp_path / 'ids_X_6.npy', LEGITIMATE['index arrays'])
  data = path.read_bytes()
  path.write_bytes(data[:keep] if keep >= 0 else data[:-1])
  with pytest.raises(DataError) as error:
    load_npy_safely(path)
  message = str(error.value)
  assert message.startswith(f'Cannot read {path}: ') and '\n' not in message
  assert 'corrupt' in message


def test_not_a_npy_file(tmp_path):
  path = tmp_path / 'ids_X_6.npy'
  path.write_bytes(b'just some text\n')
  with pytest.raises(DataError, match='Cannot read .*corrupt'):
    load_npy_safely(path)


def test_header_promising_an_array_but_holding_a_dict(tmp_path):
  path = _write_raw(tmp_path / 'ids_X_6.npy', {1: [0]}, 4)
  with pytest.raises(DataError, match='header promises an object array'):
    load_npy_safely(path)


def test_plain_integer_array_is_read_without_pickle_but_is_no_ids_dict(tmp_path):
  path = tmp_path / 'ids_X_6.npy'
  np.save(path, np.arange(4), allow_pickle=False)
  np.testing.assert_array_equal(load_npy_safely(path), np.arange(4))
  with pytest.raises(DataError) as error:
    authors_layout._read_ids_file(path)  # pylint: disable=protected-access
  assert str(error.value) == (
      f'{path}: expected a pickled dict person -> list of sequence indices, '
      'got ndarray with shape (4,).')


def test_structured_dtype_with_objects_is_refused(tmp_path):
  path = tmp_path / 'ids_X_6.npy'
  array = np.zeros(1, dtype=[('a', object)])
  np.save(path, array, allow_pickle=True)
  assert 'structured dtype with objects' in _refusal(path)


def test_no_module_of_the_package_loads_a_pickle():
  package = pathlib.Path(authors_layout.__file__).parents[1]
  for module in package.rglob('*.py'):
    # Code only: ``literals`` in docstrings may quote the unsafe call.
    source = re.sub(r'``[^`]*``', '', module.read_text())
    assert 'allow_pickle=True)' not in source.replace(
        'np.save(ids_path, ids, allow_pickle=True)', ''), module
    for call in re.findall(r'np\.load\([^)]*\)', source):
      assert 'allow_pickle=False' in call, (module, call)


def test_message_is_one_line_for_paths_with_spaces(tmp_path):
  folder = tmp_path / 'my data'
  folder.mkdir()
  path = _write(folder / 'ids_X_6.npy', {1: _Payload(os.system, 'true')})
  assert str(path) in _refusal(path)
