"""python -m sge_jax.encode: new data encoded with a finished run's encoders,
into the encodings.npz format; every mistake one line, exit status 2."""

import logging
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import sge_jax
from sge_jax import cli, progress
from sge_jax.data import memory
from sge_jax.data.npz_format import load_npz_recordings
from sge_jax.encode.new_data import DataOptions, encode_file
from sge_jax.errors import ConfigError, DataError
from tests.encode.conftest import assert_same_cages, write_walks
from tests.fixtures import ctrl_c
from tests.fixtures.pipeline import write_authors_dataset

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIELDS = ('labels', 'split', 'sequence_index', 'recording', 'sequences')


def test_the_runs_own_file_encodes_to_its_encodings(finished_run, tmp_path):
  saved = sge_jax.load_encodings(finished_run.workdir / 'encodings.npz')
  written, out = encode_file(
      finished_run.workdir, finished_run.data, tmp_path / 'again.npz',
      DataOptions(split_field='trial', train_values='1-2'))
  loaded = sge_jax.load_encodings(out)
  for field in FIELDS:
    np.testing.assert_array_equal(getattr(loaded, field),
                                  getattr(saved, field), err_msg=field)
  assert_same_cages(loaded.encodings, saved.encodings)
  meta = loaded.metadata
  assert meta.source_run == str(finished_run.workdir.absolute())
  assert meta.source_config_hash == meta.config_hash == saved.metadata.config_hash
  assert (meta.dataset, meta.data_source) == ('walks', str(finished_run.data))
  assert meta.normalization == saved.metadata.normalization == 'center'
  assert meta.sequence_units == ('metres, each sequence centred on its mean '
                                 'position')
  assert meta.model_names == saved.metadata.model_names
  assert meta == written.metadata
  # The run's own file says the same, without a source run.
  assert saved.metadata.sequence_units == meta.sequence_units
  assert saved.metadata.source_run == ''


def test_a_file_without_splits_is_one_split_data(finished_run, tmp_path):
  data = write_walks(tmp_path / 'mine.npz', people=(40, 41), trials=2, seed=7)
  _, out = encode_file(finished_run.workdir, data, tmp_path / 'mine_cages.npz',
                       DataOptions(name='my walks'))
  loaded = sge_jax.load_encodings(out)
  assert loaded.split_names == ['data']
  assert loaded.encodings.shape == (12, 6, 72)
  assert loaded.metadata.dataset == 'my walks'
  windows = load_npz_recordings(data, 6).splits['data']
  np.testing.assert_array_equal(loaded.labels, windows.labels)
  np.testing.assert_array_equal(loaded.recording, windows.recordings)
  # What the Python API gives for the same windows (split 'data', its default).
  encoder = sge_jax.load_encoder(finished_run.workdir)
  assert_same_cages(loaded.encodings, encoder.encode(windows.sequences))


def test_a_split_field_gives_one_split_per_value(finished_run, tmp_path):
  _, out = encode_file(finished_run.workdir, finished_run.data,
                       tmp_path / 'trials.npz', DataOptions(split_field='trial'))
  loaded = sge_jax.load_encodings(out)
  assert loaded.split_names == ['trial_1', 'trial_2', 'trial_3', 'trial_4']
  assert [int((loaded.split == name).sum()) for name in loaded.split_names] == [
      12, 12, 12, 12]


def test_an_authors_folder_in_each_form(finished_run, tmp_path):
  root = tmp_path / 'Datasets'
  arrays = write_authors_dataset(root, 'MYSET', 6, 20, [1, 2], 4)
  expected = np.concatenate([arrays['train'][1], arrays['test'][1]])
  for data, options in ((root / 'MYSET' / '6', DataOptions()),
                        (root / 'MYSET', DataOptions()),
                        (root, DataOptions(dataset='MYSET'))):
    _, out = encode_file(finished_run.workdir, data, tmp_path / 'myset.npz',
                         options)
    loaded = sge_jax.load_encodings(out)
    assert loaded.split_names == ['train', 'test']
    assert loaded.metadata.dataset == 'MYSET'
    np.testing.assert_array_equal(loaded.labels, expected)
  (root / 'MYSET' / '7').mkdir()
  with pytest.raises(DataError, match=r'f=7 frames; the run encodes f=6: give '
                     r'.*MYSET/6'):
    encode_file(finished_run.workdir, root / 'MYSET' / '7', tmp_path / 'o.npz')
  with pytest.raises(DataError, match="not one in the authors' layout for f=6"):
    encode_file(finished_run.workdir, tmp_path, tmp_path / 'o.npz')
  with pytest.raises(ConfigError, match='--split_field and --train_values apply '
                     'to a generic .npz'):
    encode_file(finished_run.workdir, root / 'MYSET', tmp_path / 'o.npz',
                DataOptions(split_field='trial'))


def test_data_of_another_joint_count_is_refused_before_encoding(finished_run,
                                                                tmp_path):
  data = write_walks(tmp_path / 'j18.npz', num_joints=18)
  with pytest.raises(DataError, match=r'j18.npz has J=18 joints; the encoders '
                     r'of .* were trained on J=20'):
    encode_file(finished_run.workdir, data, tmp_path / 'o.npz')
  assert not (tmp_path / 'o.npz').exists()


def test_missing_or_odd_data_is_one_line(finished_run, tmp_path):
  with pytest.raises(DataError, match='--data=.*missing.npz does not exist'):
    encode_file(finished_run.workdir, tmp_path / 'missing.npz',
                tmp_path / 'o.npz')
  os.mkfifo(tmp_path / 'fifo.npz')
  with pytest.raises(DataError, match=r'is a FIFO \(named pipe\), not a '
                     'regular file'):
    encode_file(finished_run.workdir, tmp_path / 'fifo.npz', tmp_path / 'o.npz')
  with pytest.raises(DataError, match="no field 'seq_view' for the split "
                     "field 'view'.*fields in the file: person, trial"):
    encode_file(finished_run.workdir, finished_run.data, tmp_path / 'o.npz',
                DataOptions(split_field='view'))
  with pytest.raises(DataError, match=r'Cannot read .*config.json as an .npz '
                     'archive'):
    encode_file(finished_run.workdir, finished_run.workdir / 'config.json',
                tmp_path / 'o.npz')
  (tmp_path / 'cut.npz').write_bytes(finished_run.data.read_bytes()[:5000])
  with pytest.raises(DataError, match=r'cut.npz'):
    encode_file(finished_run.workdir, tmp_path / 'cut.npz', tmp_path / 'o.npz')
  with pytest.raises(ConfigError, match='--train_values needs --split_field'):
    encode_file(finished_run.workdir, finished_run.data, tmp_path / 'o.npz',
                DataOptions(train_values='1-2'))
  with pytest.raises(ConfigError, match="--dataset and --view name folders"):
    encode_file(finished_run.workdir, finished_run.data, tmp_path / 'o.npz',
                DataOptions(dataset='KGBD'))


def test_out_never_replaces_what_the_user_has(finished_run, tmp_path):
  workdir, data = finished_run.workdir, finished_run.data
  run_encodings = workdir / 'encodings.npz'
  before = run_encodings.read_bytes()
  with pytest.raises(ConfigError, match="the run's own encodings.npz"):
    encode_file(workdir, data, run_encodings)
  with pytest.raises(ConfigError, match="the run's own rn.npz"):   # not there yet
    encode_file(workdir, data, workdir / 'rn.npz')
  assert not (workdir / 'rn.npz').exists()
  with pytest.raises(ConfigError, match='lies in the checkpoints'):
    encode_file(workdir, data, workdir / 'checkpoints' / 'x.npz')
  assert run_encodings.read_bytes() == before
  (tmp_path / 'folder.npz').mkdir()
  with pytest.raises(ConfigError, match='--out=.*folder.npz is a directory'):
    encode_file(workdir, data, tmp_path / 'folder.npz')
  with pytest.raises(ConfigError, match='must name an .npz file'):
    encode_file(workdir, data, tmp_path / 'out.txt')
  with pytest.raises(ConfigError, match='the folder .*absent does not exist'):
    encode_file(workdir, data, tmp_path / 'absent' / 'out.npz')
  with pytest.raises(ConfigError, match='is the --data file'):
    encode_file(workdir, data, data)
  foreign = tmp_path / 'mine.npz'
  shutil.copy(data, foreign)
  with pytest.raises(ConfigError, match='exists and is not an encodings file '
                     'written by python -m sge_jax.encode'):
    encode_file(workdir, data, foreign)
  assert foreign.read_bytes() == data.read_bytes()
  # Its own file from before is replaced: rerunning the command goes on.
  out = tmp_path / 'out.npz'
  encode_file(workdir, data, out)
  encode_file(workdir, data, out, DataOptions(name='again'))
  assert sge_jax.load_encodings(out).metadata.dataset == 'again'
  assert not (tmp_path / 'out.npz.tmp').exists()
  # Inside the run's workdir, any other name is the user's to choose.
  encode_file(workdir, data, workdir / 'walks_again.npz')
  (workdir / 'walks_again.npz').unlink()


def _command(*arguments):
  return subprocess.run([sys.executable, '-m', 'sge_jax.encode', *arguments],
                        capture_output=True, text=True, cwd=REPO, timeout=300,
                        check=False)


@pytest.mark.slow
def test_the_command_encodes_the_runs_test_split_as_the_run_did(finished_run,
                                                               tmp_path):
  completed = _command(f'--workdir={finished_run.workdir}',
                       f'--data={finished_run.data}',
                       f'--out={tmp_path / "cages.npz"}', '--split_field=trial',
                       '--train_values=1-2')
  assert completed.returncode == 0, completed.stderr
  assert f'Wrote {tmp_path / "cages.npz"}: 48 sequences of walks' in (
      completed.stdout)
  assert 'normalization center' in completed.stdout
  loaded = sge_jax.load_encodings(tmp_path / 'cages.npz')
  saved = sge_jax.load_encodings(finished_run.workdir / 'encodings.npz')
  assert loaded.split_names == ['train', 'test']
  # Another process, another compilation: equal up to float32 rounding.
  assert_same_cages(loaded.select('test').encodings,
                    saved.select('test').encodings)
  np.testing.assert_array_equal(loaded.select('test').labels,
                                saved.select('test').labels)
  assert loaded.metadata.source_run == str(finished_run.workdir.absolute())


@pytest.mark.parametrize('arguments, message', [
    (('--workdir={run}', '--data={walks_j18}', '--out={tmp}/o.npz'),
     r'^error: .*j18.npz has J=18 joints; the encoders of .* were trained on '
     r'J=20'),
    (('--workdir={run}', '--data={tmp}', '--out={tmp}'),
     r'^error: --out=.* is a directory'),
    (('--workdir={tmp}', '--data={walks_j18}', '--out={tmp}/o.npz'),
     r'^error: .* is not the workdir of a run: it has no config.json'),
    (('--workdir={run}', '--data={walks_j18}'), r'^error: .*--out'),
])
@pytest.mark.slow
def test_command_mistakes_are_one_line_and_status_2(finished_run, tmp_path,
                                                    arguments, message):
  walks_j18 = write_walks(tmp_path / 'j18.npz', num_joints=18)
  completed = _command(*(
      argument.format(tmp=tmp_path, walks_j18=walks_j18,
                      run=finished_run.workdir)
      for argument in arguments))
  assert completed.returncode == 2, completed.stderr
  errors = [line for line in completed.stderr.splitlines()
            if line.startswith('error:')]
  assert len(errors) == 1 and 'Traceback' not in completed.stderr
  assert re.search(message, errors[0]), completed.stderr
  assert not (tmp_path / 'o.npz').exists()


def test_out_never_replaces_another_runs_files(finished_run, tmp_path):
  """A transfer run's encodings.npz names a source_run, as the files this
  command writes do: a folder holding a run's config.json is a run's all
  the same."""
  other = tmp_path / 'transfer_run'
  (other / 'checkpoints').mkdir(parents=True)
  shutil.copy(finished_run.workdir / 'config.json', other)
  encode_file(finished_run.workdir, finished_run.data, tmp_path / 'made.npz')
  shutil.copy(tmp_path / 'made.npz', other / 'encodings.npz')
  before = (other / 'encodings.npz').read_bytes()
  with pytest.raises(ConfigError, match=r"the run's own encodings.npz in "
                     r'.*transfer_run: this command never replaces it'):
    encode_file(finished_run.workdir, finished_run.data,
                other / 'encodings.npz', DataOptions(name='over'))
  with pytest.raises(ConfigError, match='lies in the checkpoints of '
                     '.*transfer_run'):
    encode_file(finished_run.workdir, finished_run.data,
                other / 'checkpoints' / 'x.npz')
  assert (other / 'encodings.npz').read_bytes() == before
  assert not (other / 'checkpoints' / 'x.npz').exists()


def test_a_run_without_encoders_is_refused_before_the_data_are_read(
    finished_run, tmp_path):
  untrained = tmp_path / 'untrained'
  untrained.mkdir()
  shutil.copy(finished_run.workdir / 'config.json', untrained)
  (tmp_path / 'cut.npz').write_bytes(finished_run.data.read_bytes()[:5000])
  with pytest.raises(DataError, match='No trained encoders in .*untrained/'
                     'checkpoints: run the train stage'):
    encode_file(untrained, tmp_path / 'cut.npz', tmp_path / 'o.npz')


class _OpensAFileWhenUnpickled:
  """Pickled into an object array; unpickling it creates ``path``."""

  def __init__(self, path):
    self.path = path

  def __reduce__(self):
    return (open, (str(self.path), 'w'))


def test_data_holding_pickles_is_refused_unread(finished_run, tmp_path):
  marker = tmp_path / 'unpickled'
  data = tmp_path / 'pickled.npz'
  array = np.empty(1, dtype=object)
  array[0] = _OpensAFileWhenUnpickled(marker)
  write_walks(data, seq_note=array)
  assert b'unpickled' in data.read_bytes()    # the pickle is in the file
  with pytest.raises(DataError, match='pickled.npz'):
    encode_file(finished_run.workdir, data, tmp_path / 'o.npz')
  assert not marker.exists()
  assert not (tmp_path / 'o.npz').exists()


def test_data_too_large_for_the_memory_is_one_line(finished_run, tmp_path,
                                                   monkeypatch):
  monkeypatch.setattr(memory, 'available_bytes',
                      lambda: (1000, 'free (a test)'))
  with pytest.raises(DataError, match=r'Reading .*walks.npz needs at least '
                     r'.* more than the .* free \(a test\)'):
    encode_file(finished_run.workdir, finished_run.data, tmp_path / 'o.npz')
  assert not (tmp_path / 'o.npz').exists()


def test_large_files_show_progress_with_an_eta(finished_run, tmp_path,
                                               monkeypatch, caplog):
  monkeypatch.setattr(progress, 'INTERVAL_S', 0.0)    # a line per batch
  monkeypatch.setattr(progress, '_last_line', progress._LastLine())
  with caplog.at_level(logging.INFO):
    encode_file(finished_run.workdir, finished_run.data, tmp_path / 'o.npz',
                DataOptions(split_field='trial'))
  lines = [record.getMessage() for record in caplog.records
           if record.getMessage().startswith('[encode]')]
  assert lines[0] == ('[encode] CAGEs of walks: 12/48 sequences (25.0%), ETA '
                      + lines[0].rsplit(' ', 1)[1])
  assert re.fullmatch(r'\d+:\d\d', lines[0].rsplit(' ', 1)[1])
  assert len(lines) == 3      # after 12, 24 and 36 of 48 sequences


def _interrupted(encode, out, capfd):
  """Runs ``encode`` as the command does (cli.exit_on_user_error); returns
  the exit status and the 'interrupted' line."""
  with ctrl_c.commands_handler():
    with pytest.raises(SystemExit) as exit_:
      cli.exit_on_user_error(
          encode, interrupted_hint=f'--out={out} is as it was')
  lines = [line for line in capfd.readouterr().err.splitlines()
           if line.startswith('interrupted')]
  return exit_.value.code, lines


def test_ctrl_c_while_encoding_leaves_out_as_it_was(finished_run, tmp_path,
                                                    monkeypatch, capfd):
  out = tmp_path / 'out.npz'
  encode_file(finished_run.workdir, finished_run.data, out)
  before = out.read_bytes()
  advance = progress.Progress.advance

  def pressed_while_encoding(self, count=1):
    ctrl_c.press()
    advance(self, count)

  monkeypatch.setattr(progress.Progress, 'advance', pressed_while_encoding)
  status, lines = _interrupted(
      lambda: encode_file(finished_run.workdir, finished_run.data, out,
                          DataOptions(name='after')), out, capfd)
  assert status == 130
  assert lines == [f'interrupted: no CAGEs were written; --out={out} is as '
                   'it was']
  assert out.read_bytes() == before
  assert not (tmp_path / 'out.npz.tmp').exists()


def test_ctrl_c_while_writing_leaves_out_as_it_was(finished_run, tmp_path,
                                                   monkeypatch, capfd):
  out = tmp_path / 'out.npz'
  encode_file(finished_run.workdir, finished_run.data, out)
  before = out.read_bytes()
  savez = np.savez

  def pressed_half_way(file, **arrays):
    savez(file, **dict(list(arrays.items())[:2]))
    raise KeyboardInterrupt

  monkeypatch.setattr(np, 'savez', pressed_half_way)
  status, _ = _interrupted(
      lambda: encode_file(finished_run.workdir, finished_run.data, out,
                          DataOptions(name='after')), out, capfd)
  assert status == 130
  assert out.read_bytes() == before
  assert not (tmp_path / 'out.npz.tmp').exists()
