"""Pickled ids files are read without running code from them (sge_jax.data.safe_pickle).

Legitimate files (np.save of a dict of index lists/arrays, any pickle protocol,
NumPy 1.x or 2.x names) load to the dict person -> indices that
``np.load(allow_pickle=True)`` holds; a file naming any other callable, abusing
the accepted NumPy names, or shaped otherwise (nested or shared lists that
would expand a small file) is refused with a one-line DataError naming the
file, before anything is expanded, and its payload never runs.
"""

import base64
import builtins
import codecs
import os
import pathlib
import pickle
import re
import subprocess
import sys

import numpy as np
from numpy.lib import format as npy_format
import pytest

from tests.fixtures.data import write_dataset
from sge_jax.data import authors_layout, safe_pickle
from sge_jax.data.authors_layout import load_authors_dataset
from sge_jax.data.safe_pickle import NAMES, read_ids_file
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


def _write_raw(path, pickle_bytes):
  """An object-array header followed by ``pickle_bytes``."""
  with open(path, 'wb') as file:
    npy_format.write_array_header_1_0(
        file, {'descr': '|O', 'fortran_order': False, 'shape': ()})
    file.write(pickle_bytes)
  return path


def _as_ids(loaded):
  """What np.load gives, as person -> list of int indices."""
  return {int(key): [int(i) for i in np.asarray(value).reshape(-1).tolist()]
          for key, value in loaded.item().items()}


def _refusal(path):
  with pytest.raises(DataError) as error:
    read_ids_file(path)
  message = str(error.value)
  assert '\n' not in message
  assert message.startswith(f'{path}: refused to load: the ids file ')
  assert message.endswith('an ids file holds only a dict person id -> flat '
                          'list of sequence indices (np.save of such a dict): '
                          'download or rebuild it.')
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
                   3: np.array([1, 2], dtype='>i8'),
                   4: np.arange(3000, dtype='<u4')},   # > 1000 bytes of data
    'empty dict': {},
}


@pytest.mark.parametrize('protocol', WRITERS)
@pytest.mark.parametrize('name', list(LEGITIMATE))
def test_legitimate_files_load_as_np_load_holds_them(tmp_path, name, protocol):
  path = _write(tmp_path / 'ids_X_6.npy', LEGITIMATE[name], protocol)
  loaded = read_ids_file(path)
  assert loaded == _as_ids(np.load(path, allow_pickle=True))
  assert all(type(k) is int and all(type(i) is int for i in v)
             for k, v in loaded.items())


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
  assert read_ids_file(path) == {3: [0, 2], 7: [1], 9: [3, 4]}


def test_accepted_names_are_both_numpy_spellings_and_nothing_callable():
  names = {f'{module}.{name}' for module, name in NAMES}
  for core in ('numpy.core', 'numpy._core'):
    assert {f'{core}.multiarray._reconstruct', f'{core}.multiarray.scalar',
            f'{core}.numeric._frombuffer'} <= names
  assert {'numpy.ndarray', 'numpy.dtype', '_codecs.encode',
          '__builtin__.bytes'} <= names
  assert not {'builtins.eval', 'builtins.exec', 'builtins.getattr', 'io.open',
              'posix.system', 'os.system', 'numpy.load', 'numpy.frombuffer',
              'builtins.__import__', 'builtins.dict', 'builtins.list'} & names
  assert all(isinstance(value, str) for value in NAMES.values())


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
  assert f'names {_qualified(payload.function, protocol)};' in _refusal(path)
  assert not marker.exists()


@pytest.mark.parametrize('protocol', PROTOCOLS)
def test_code_payload_as_the_whole_pickle_is_refused(tmp_path, protocol):
  marker = tmp_path / 'marker'
  path = _write_raw(tmp_path / 'ids_X_6.npy', pickle.dumps(
      _Payload(os.system, f'touch {marker}'), protocol=protocol))
  assert f'names {_qualified(os.system)}' in _refusal(path)
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
    'float array': ({1: np.array([0.0, 1.0])}, "dtype 'f8'"),
    'float scalar': ({1: [np.float64(1.0)]}, "dtype 'f8'"),
    'bool array': ({1: np.array([True, False])}, "dtype 'b1'"),
    'complex array': ({1: np.array([1j])}, "dtype 'c16'"),
    'structured array': ({1: np.zeros(2, dtype=[('a', 'i8')])}, "dtype 'V8'"),
    'datetime array': ({1: np.array([1], dtype='M8[s]')}, "dtype 'M8'"),
    'object array inside': ({1: np.array([[0], 'x'], dtype=object)},
                            'maps person 1 to a object array'),
    '2-D index array': ({1: np.zeros((2, 3), dtype=np.int64)},
                        'array of shape (2, 3)'),
    'object scalar': ({1: [_Reduce(_SCALAR, (np.dtype(object), [0]))]},
                      'array data that is a list'),
    'masked array subclass': ({1: np.ma.masked_array([0, 1])},
                              'names numpy.ma.core'),
    'object array from raw bytes (pointer forgery)': (
        {1: _forged_array(np.dtype(object), b'\x41' * 16)},
        'maps person 1 to a object array'),
    'wrong data length': ({1: _forged_array(np.dtype('i8'), b'\0' * 15)},
                          '(15 bytes)'),
    'void dtype by name': ({1: _forged_array(_forged_dtype(
        'V16', (3, '|', None, None, None, 16, 1, 0)), b'\0' * 32)},
                           "dtype 'V16'"),
    'bad byte order': ({1: _forged_array(_forged_dtype(
        'i8', (3, '!', None, None, None, -1, -1, 0)), b'\0' * 16)},
                       "dtype 'i8', not an integer one"),
    'reconstruct of a dict': ({1: _Reduce(_RECONSTRUCT, (dict, (0,), b'b'))},
                              '.dict;'),
    'float frombuffer': ({1: _Reduce(_FROMBUFFER, (
        b'\0' * 8, np.dtype('f8'), (1,), 'C'))}, "dtype 'f8'"),
    'codec other than latin-1': ({1: _forged_array(
        np.dtype('i8'), _Reduce(codecs.encode, ('x' * 16, 'rot13')))},
                                 'array data that is a numpy encode'),
    'a dict as the index list': ({1: {2: 3}},
                                 'holds a dict where an array belongs'),
    'a string as a person id': ({'one': [0]},
                                "person id 'one' that is not an integer"),
    'a bool as a person id': ({True: [0]}, 'person id that is a bool'),
    'a string as an index': ({1: ['0']}, 'sequence index that is a str'),
    'a float as an index': ({1: [0.0]}, 'sequence index that is a float'),
    'array never filled': ({1: _Reduce(_RECONSTRUCT, (np.ndarray, (0,), b'b'))},
                           'contents are missing'),
}


@pytest.mark.parametrize('protocol', [2, 'np.save', 5])
@pytest.mark.parametrize('name', list(ABUSES))
def test_accepted_names_with_abused_contents_are_refused(tmp_path, name,
                                                         protocol):
  value, expected = ABUSES[name]
  path = _write(tmp_path / 'ids_X_6.npy', value, protocol)
  assert expected in _refusal(path)


# --------------------------------------------- small files that would expand


def test_nested_lists_are_refused_before_they_are_expanded(tmp_path):
  # 466 bytes that np.asarray expands to 2**31 indices (16 GiB): each level
  # holds the level below twice, and pickle stores it once.
  nested = [0, 0]
  for _ in range(30):
    nested = [nested, nested]
  path = _write(tmp_path / 'ids_X_6.npy', {0: nested})
  assert path.stat().st_size < 500
  assert 'sequence index that is a list' in _refusal(path)


def test_the_authors_loader_refuses_the_nested_lists_too(tmp_path):
  nested = [0, 0]
  for _ in range(30):
    nested = [nested, nested]
  write_dataset(tmp_path / 'KGBD' / '6', 'KGBD', 6, 20, test_tags=['KGBD'])
  path = tmp_path / 'KGBD' / '6' / 'KGBD_train_npy_data' / 'ids_KGBD_6.npy'
  _write(path, {0: nested})
  with pytest.raises(DataError, match='refused to load: the ids file has a '
                     'sequence index that is a list'):
    load_authors_dataset(tmp_path, 'KGBD', 6)


@pytest.mark.parametrize('shared', ['list', 'array', 'array data'])
def test_one_list_shared_by_many_persons_is_refused(tmp_path, shared):
  indices = list(range(2000))
  if shared == 'list':
    value = {person: indices for person in range(2000)}
  elif shared == 'array':
    array = np.arange(2000, dtype=np.int8)
    value = {person: array for person in range(2000)}
  else:  # distinct arrays, one bytes object (pickle memoizes it once)
    data = bytes(2000)
    value = {person: _forged_array(np.dtype('i1'), data, shape=(2000,))
             for person in range(2000)}
  path = _write(tmp_path / 'ids_X_6.npy', value, 4)
  # 4 million indices in a file of a few kB.
  assert path.stat().st_size < 100_000
  assert 'lists more sequence indices than it has bytes' in _refusal(path)


def test_a_huge_memo_index_allocates_nothing(tmp_path):
  # LONG_BINPUT 2**30: the C unpickler would allocate (and clear) an 8 GiB
  # memo table for it; the reader must stay small. Run under a 1.5 GiB
  # address-space limit in a fresh interpreter.
  ids = pickle.dumps(np.array({1: [0]}, dtype=object), protocol=2)
  stop = ids.rindex(b'.')
  path = _write_raw(tmp_path / 'ids_X_6.npy',
                    ids[:stop] + b'r\x00\x00\x00\x40' + ids[stop:])
  script = ('import resource, sys; resource.setrlimit(resource.RLIMIT_AS, '
            '(3 * 2**29, 3 * 2**29)); '
            'from sge_jax.data.safe_pickle import read_ids_file; '
            f'print(read_ids_file({str(path)!r}))')
  completed = subprocess.run(
      [sys.executable, '-c', script], capture_output=True, text=True,
      timeout=120, check=False,
      env={**os.environ, 'OPENBLAS_NUM_THREADS': '1', 'OMP_NUM_THREADS': '1'})
  assert completed.returncode == 0, completed.stderr[-2000:]
  assert completed.stdout.strip() == '{1: [0]}'


def test_a_file_far_larger_than_any_ids_file_is_refused_unread(tmp_path,
                                                               monkeypatch):
  monkeypatch.setattr(safe_pickle, 'MAX_FILE_BYTES', 1000)
  path = _write(tmp_path / 'ids_X_6.npy', {1: list(range(1000))})
  assert 'bytes, more than 1000' in _refusal(path)


# ---------------------------------------------------------------- malformed


@pytest.mark.parametrize('keep', [0, 5, 60, 130, 200, -1])
def test_truncated_file(tmp_path, keep):
  path = _write(tmp_path / 'ids_X_6.npy', LEGITIMATE['index arrays'])
  data = path.read_bytes()
  path.write_bytes(data[:keep] if keep >= 0 else data[:-1])
  with pytest.raises(DataError) as error:
    read_ids_file(path)
  message = str(error.value)
  assert message.startswith(f'Cannot read {path}: ') and '\n' not in message
  assert 'corrupt' in message


def test_not_a_npy_file(tmp_path):
  path = tmp_path / 'ids_X_6.npy'
  path.write_bytes(b'just some text\n')
  with pytest.raises(DataError, match='Cannot read .*corrupt'):
    read_ids_file(path)


def test_header_promising_an_array_but_holding_a_dict(tmp_path):
  path = _write_raw(tmp_path / 'ids_X_6.npy', pickle.dumps({1: [0]}, 4))
  assert 'holds a dict where an array belongs' in _refusal(path)


def test_plain_integer_array_is_no_ids_dict_and_is_not_read(tmp_path):
  path = tmp_path / 'ids_X_6.npy'
  np.save(path, np.arange(4), allow_pickle=False)
  assert 'holds a int64 array of shape (4,), not a pickled dict' in _refusal(path)


def test_structured_dtype_with_objects_is_refused(tmp_path):
  path = tmp_path / 'ids_X_6.npy'
  np.save(path, np.zeros(1, dtype=[('a', object)]), allow_pickle=True)
  assert "holds a [('a', 'O')] array of shape (1,), not a pickled dict" in _refusal(
      path)


@pytest.mark.parametrize('kind', ['directory', 'fifo'])
def test_an_ids_path_that_is_no_regular_file_is_refused_unopened(tmp_path,
                                                                 kind):
  path = tmp_path / 'ids_X_6.npy'
  if kind == 'directory':
    path.mkdir()
  else:
    os.mkfifo(path)  # opening it would wait for a writer forever
  with pytest.raises(DataError) as error:
    read_ids_file(path)
  assert str(error.value).startswith(f'{path} is a {kind if kind != "fifo" else "FIFO"}')


def test_no_module_of_the_package_loads_a_pickle():
  package = pathlib.Path(authors_layout.__file__).parents[1]
  for module in package.rglob('*.py'):
    # Code only: ``literals`` in docstrings may quote the unsafe call.
    source = re.sub(r'``[^`]*``', '', module.read_text())
    assert 'allow_pickle=True)' not in source.replace(
        'np.save(ids_path, ids, allow_pickle=True)', ''), module
    for call in re.findall(r'np\.load\([^)]*\)', source):
      assert 'allow_pickle=False' in call, (module, call)
    if module.name != 'safe_pickle.py':
      assert 'pickle.load' not in source and 'Unpickler' not in source, module


def test_message_is_one_line_for_paths_with_spaces_and_newlines(tmp_path):
  folder = tmp_path / 'my data\nfolder'
  folder.mkdir()
  path = _write(folder / 'ids_X_6.npy', {1: _Payload(os.system, 'true')})
  with pytest.raises(DataError) as error:
    read_ids_file(path)
  assert '\n' not in str(error.value)
  assert 'my data folder' in str(error.value)
