"""Writing the workdir's files: a full disk or a read-only file is one line
naming the file and the cause, the previous version is kept, and no temporary
file is left.

The faults are simulated by making the system calls fail (the tests run as
root, for whom permissions never refuse a write)."""

import errno
import json
import os

import numpy as np
import pytest

from sge_jax import workdir as workdir_lib
from sge_jax.config import RNSettings, get_config
from sge_jax.encode import encodings as encodings_lib
from sge_jax.errors import WorkdirError
from sge_jax.evaluate import plot_style, recognition, saved_rn
from tests.fixtures.encodings import tiny_encoding_set

ENOSPC = OSError(errno.ENOSPC, 'No space left on device')
EACCES = OSError(errno.EACCES, 'Permission denied')
EROFS = OSError(errno.EROFS, 'Read-only file system')


def _fail(monkeypatch, call, error):
  """Makes ``os.<call>`` raise ``error`` (for the files under test only)."""
  real = getattr(os, call)

  def failing(*args, **kwargs):
    if call == 'open' and not args[1] & os.O_CREAT:
      return real(*args, **kwargs)
    raise error

  monkeypatch.setattr(os, call, failing)


def _leftovers(directory):
  return sorted(p.name for p in directory.iterdir() if '.tmp' in p.name)


@pytest.mark.parametrize('call, error, cause, way_out', [
    ('fsync', ENOSPC, 'No space left on device (errno 28)', 'free some space'),
    ('open', EACCES, 'Permission denied (errno 13)',
     'make it and its directory writable'),
    ('replace', EROFS, 'Read-only file system (errno 30)',
     'use a writable filesystem'),
])
def test_a_failed_write_is_one_line_and_keeps_the_previous_version(
    tmp_path, monkeypatch, call, error, cause, way_out):
  path = tmp_path / 'results.json'
  workdir_lib.write_json({'rank1': 0.5}, path)
  _fail(monkeypatch, call, error)
  with pytest.raises(WorkdirError) as raised:
    workdir_lib.write_json({'rank1': 0.9}, path)
  assert str(raised.value) == (
      f'cannot write {path}: {cause}; {way_out} and run the same command '
      'again; the previous version is kept')
  monkeypatch.undo()
  assert json.loads(path.read_text()) == {'rank1': 0.5}
  assert _leftovers(tmp_path) == []


def test_a_first_version_that_cannot_be_written_claims_nothing_kept(
    tmp_path, monkeypatch):
  _fail(monkeypatch, 'fsync', ENOSPC)
  with pytest.raises(WorkdirError, match=r'again$'):
    workdir_lib.write_text_atomically(tmp_path / 'report.md', '# report\n')
  monkeypatch.undo()
  assert list(tmp_path.iterdir()) == []


def test_a_temporary_file_left_by_a_killed_run_is_replaced_not_followed(
    tmp_path):
  (tmp_path / 'elsewhere').write_text('keep')
  (tmp_path / 'config.json.tmp').symlink_to(tmp_path / 'elsewhere')
  workdir_lib.write_text_atomically(tmp_path / 'config.json', '{}\n')
  assert (tmp_path / 'config.json').read_text() == '{}\n'
  assert (tmp_path / 'elsewhere').read_text() == 'keep'
  assert _leftovers(tmp_path) == []


def test_a_failed_append_to_the_metrics_log_keeps_the_lines_before(
    tmp_path, monkeypatch):
  log = workdir_lib.MetricsLog(tmp_path / 'metrics.jsonl')
  log.write({'stage': 'train', 'step': 1})
  before = log.path.read_bytes()
  real_write = os.write

  def half_then_full(fd, data):        # part of the line fits, then no space
    monkeypatch.setattr(os, 'write', _raise(ENOSPC))
    return real_write(fd, data[:len(data) // 2])

  monkeypatch.setattr(os, 'write', half_then_full)
  with pytest.raises(WorkdirError) as raised:
    log.write({'stage': 'train', 'step': 2, 'loss': 1.5})
  assert str(raised.value) == (
      f'cannot append to {log.path}: No space left on device (errno 28); free '
      'some space and run the same command again; the lines written before '
      'are kept')
  monkeypatch.undo()
  assert log.path.read_bytes() == before


def _raise(error):
  def failing(*args, **kwargs):
    raise error
  return failing


# ------------------------------------------------- every file of the workdir


def _save_rn(path):
  settings = RNSettings(selection='fixed', epochs=2, batch_size=4, hidden=4,
                        epochs_per_call=2)
  rng = np.random.default_rng(0)
  labels = np.array([1, 1, 2, 2])
  result = recognition.train_and_score(
      rng.normal(size=(4, 2, 3)), labels,
      {'test': (rng.normal(size=(2, 2, 3)), np.array([1, 2]))}, settings)
  saved_rn.save_rn(path, result, settings, 'digest', {})


def _save_plot(path):
  figure = plot_style.new_figure((2, 2))
  figure.add_subplot().plot([0, 1], [0, 1])
  plot_style.save_figure(figure, path)


@pytest.mark.parametrize('name, save', [
    ('encodings.npz',
     lambda path: encodings_lib.save_encodings(path, tiny_encoding_set())),
    ('rn.npz', _save_rn),
    ('cmc_A_test.png', _save_plot),
    ('config.json',
     lambda path: workdir_lib.write_config(get_config().to_json(indent=2),
                                           path.parent)),
])
def test_every_file_of_the_workdir_fails_as_one_line(tmp_path, monkeypatch,
                                                     name, save):
  path = tmp_path / name
  save(path)
  before = path.read_bytes()
  _fail(monkeypatch, 'fsync', ENOSPC)
  with pytest.raises(WorkdirError, match=f'^cannot write {path}: No space'):
    save(path)
  monkeypatch.undo()
  assert path.read_bytes() == before
  assert _leftovers(tmp_path) == []


def test_a_metrics_log_that_is_not_a_regular_file_is_one_line(tmp_path):
  # Reading (re-evaluation) or appending to (training) a FIFO would block.
  fifo = tmp_path / 'metrics.jsonl'
  os.mkfifo(fifo)
  from sge_jax.errors import DataError  # pylint: disable=import-outside-toplevel
  for enabled in (True, False):
    with pytest.raises(DataError, match=r'metrics.jsonl is a FIFO .*metrics '
                       'log of the run must be a regular file. Move it away'):
      workdir_lib.MetricsLog(fifo, enabled=enabled)
