"""Input files: never opened unless regular, arrays seen from their headers
(sge_jax.data.input_files), and every loader refusing a FIFO, device or directory
in one line instead of hanging or crashing."""

import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import sys
import zipfile

import numpy as np
from numpy.lib import format as npy_format
import pytest

from sge_jax import workdir
from sge_jax.data import input_files
from sge_jax.data import recording_ids
from sge_jax.data.authors_layout import load_authors_dataset
from sge_jax.data.npz_format import load_npz_dataset
from sge_jax.data.safe_pickle import read_ids_file
from sge_jax.encode.encodings import load_encodings
from sge_jax.errors import DataError
from sge_jax.reference import check_reference
from tests.fixtures.data import write_dataset

REPO = pathlib.Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def _no_hang(seconds=20):
  """Fails (instead of hanging the suite) if the body blocks, e.g. in open()
  on a FIFO: the alarm's exception interrupts the blocked system call."""
  def on_alarm(signum, frame):
    raise TimeoutError('blocked: a FIFO was opened')
  previous = signal.signal(signal.SIGALRM, on_alarm)
  signal.alarm(seconds)
  try:
    yield
  finally:
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _make(path, kind):
  if kind == 'fifo':
    os.mkfifo(path)
  elif kind == 'directory':
    path.mkdir()
  elif kind == 'socket':
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.close()
  return path


KINDS = {'fifo': 'a FIFO (named pipe)', 'directory': 'a directory',
         'socket': 'a socket'}


@pytest.mark.parametrize('kind', list(KINDS))
def test_not_regular_names_what_the_path_is(tmp_path, kind):
  assert input_files.not_regular(_make(tmp_path / 'x', kind)) == KINDS[kind]


def test_regular_files_missing_paths_and_devices(tmp_path):
  (tmp_path / 'file').write_text('x')
  os.symlink(tmp_path / 'file', tmp_path / 'link')
  assert input_files.not_regular(tmp_path / 'file') is None
  assert input_files.not_regular(tmp_path / 'link') is None
  assert input_files.not_regular(tmp_path / 'missing') is None
  assert input_files.not_regular('/dev/zero') == 'a character device'
  os.symlink('/dev/zero', tmp_path / 'to_zero')
  assert input_files.not_regular(tmp_path / 'to_zero') == 'a character device'


def test_require_regular_file_is_one_line_with_the_way_out(tmp_path):
  path = _make(tmp_path / 'ids_X_6.npy', 'fifo')
  with pytest.raises(DataError) as error, _no_hang():
    input_files.require_regular_file(path, 'ids file')
  assert str(error.value) == (
      f'{path} is a FIFO (named pipe), not a regular file: the ids file must be '
      'a regular file. Replace it with one.')


def test_array_headers_read_shapes_without_the_data(tmp_path):
  np.save(tmp_path / 'a.npy', np.zeros((3, 4), np.float32))
  np.savez(tmp_path / 'b.npz', x=np.arange(5), y=np.array('text'))
  with zipfile.ZipFile(tmp_path / 'b.npz', 'a') as archive:
    archive.writestr('notes.txt', 'not an array')
  # A header promising 8 TiB, with no data behind it.
  with open(tmp_path / 'huge.npy', 'wb') as file:
    npy_format.write_array_header_1_0(
        file, {'descr': '<f8', 'fortran_order': False, 'shape': (2**40,)})
  assert input_files.array_headers(tmp_path / 'a.npy') == {
      '': ((3, 4), np.dtype(np.float32))}
  assert input_files.array_headers(tmp_path / 'b.npz') == {
      'x': ((5,), np.dtype(np.int64)), 'y': ((), np.dtype('<U4'))}
  with pytest.raises(ValueError, match='huge.npy: the header promises '
                     '8796093022208 bytes of data, the file holds 0'):
    input_files.array_headers(tmp_path / 'huge.npy')
  assert input_files.array_bytes({'': ((2**40,), np.dtype('<f8'))}) == 2**43


# ------------------------------------------------------- every loader, FIFOs


def _authors(tmp_path):
  write_dataset(tmp_path / 'KGBD' / '6', 'KGBD', 6, 20, test_tags=['KGBD'])
  return tmp_path / 'KGBD' / '6' / 'KGBD_train_npy_data'


def _load_authors(tmp_path):
  return load_authors_dataset(tmp_path, 'KGBD', 6)


# name -> (the path to replace, given tmp_path; the call that reads it)
READERS = {
    'config.json': (lambda t: t / 'config.json',
                    lambda t: workdir.read_config(t / 'config.json')),
    'encodings.npz': (lambda t: t / 'encodings.npz',
                      lambda t: load_encodings(t / 'encodings.npz')),
    'data .npz': (lambda t: t / 'gist.npz',
                  lambda t: load_npz_dataset(t / 'gist.npz', 6)),
    'source file': (lambda t: _authors(t) / 'source_y_KGBD_6.npy',
                    _load_authors),
    'target file': (lambda t: _authors(t) / 'target_z_KGBD_6.npy',
                    _load_authors),
    'ids file (loader)': (lambda t: _authors(t) / 'ids_KGBD_6.npy',
                          _load_authors),
    'ids file': (lambda t: t / 'ids.npy', lambda t: read_ids_file(t / 'ids.npy')),
    'recordings file': (lambda t: _authors(t) / 'recordings_KGBD_6.npy',
                        _load_authors),
    'reference file': (lambda t: t / 'ref.npz',
                       lambda t: check_reference.main([str(t / 'ref.npz')])),
}


@pytest.mark.parametrize('kind', ['fifo', 'directory'])
@pytest.mark.parametrize('reader', list(READERS))
def test_every_reader_refuses_a_path_that_is_no_regular_file(tmp_path, reader,
                                                             kind):
  locate, read = READERS[reader]
  path = locate(tmp_path)
  if path.exists():
    path.unlink()
  _make(path, kind)
  with pytest.raises(DataError) as error, _no_hang():
    read(tmp_path)
  message = str(error.value)
  assert str(path) in message and f'is {KINDS[kind]}' in message
  assert '\n' not in message
  assert '. ' in message or '; ' in message  # the way out follows


def test_a_recordings_file_cut_short_is_refused_unread(tmp_path):
  # A header promising 2**40 ids (8 TiB) with nothing behind it.
  folder = _authors(tmp_path)
  with open(folder / 'recordings_KGBD_6.npy', 'wb') as file:
    npy_format.write_array_header_1_0(
        file, {'descr': '<i8', 'fortran_order': False, 'shape': (2**40,)})
  with pytest.raises(DataError, match=r'Cannot read .*recordings_KGBD_6.npy '
                     r'\(ValueError: .*the header promises 8796093022208 bytes '
                     r'of data, the file holds 0 \(cut short\?\)\)'):
    recording_ids.read_recordings_file(folder / 'recordings_KGBD_6.npy', 12)


def test_a_json_bomb_in_config_json_is_one_line(tmp_path):
  (tmp_path / 'config.json').write_text('[' * 200000)
  with pytest.raises(DataError, match='is not valid JSON'):
    workdir.read_config(tmp_path / 'config.json')


def test_a_preprocessing_raw_file_that_is_a_fifo_is_skipped(tmp_path):
  from sge_jax.preprocess import recordings as rec_lib
  path = _make(tmp_path / 'walk.txt', 'fifo')
  with pytest.raises(OSError, match='not a regular file'), _no_hang():
    rec_lib.read_text(str(path))


@pytest.mark.parametrize('kind', ['fifo', 'directory'])
@pytest.mark.slow
def test_launch_refuses_a_config_file_that_is_no_regular_file(tmp_path, kind):
  config = _make(tmp_path / 'config.py', kind)
  completed = subprocess.run(
      [sys.executable, 'launch.py', f'--config={config}:smoke',
       f'--workdir={tmp_path / "run"}'], capture_output=True, text=True,
      cwd=REPO, timeout=120, check=False)
  assert completed.returncode == 2, completed.stderr[-2000:]
  assert completed.stderr.splitlines()[-2] == (
      f'error: the config file {config} is {KINDS[kind]}, not a regular file: '
      'pass a config .py file, e.g. --config=configs/demo.py.')
  assert not (tmp_path / 'run').exists()


def test_a_config_json_far_larger_than_a_config_is_not_read(tmp_path,
                                                            monkeypatch):
  monkeypatch.setattr(workdir, 'MAX_CONFIG_BYTES', 100)
  path = tmp_path / 'config.json'
  path.write_text('{"seed": 0, "pad": "' + 'x' * 200 + '"}')
  with pytest.raises(DataError, match=r'config.json is 222 bytes, not a '
                     'config'):
    workdir.read_config(path)
