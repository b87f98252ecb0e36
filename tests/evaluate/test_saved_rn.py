"""A damaged or foreign rn.npz never stops an evaluation (sge_jax.evaluate.saved_rn).

One real rn.npz is made per module (a 4-epoch RN on three separable people);
each test damages a copy: the file, its meta, or one parameter array. Loading
must return the SavedRN with ``unusable`` saying why, read nothing it does not
need, and an evaluation must train the RN again with a warning naming the file.
"""

import json
import os
import shutil
import zipfile

import numpy as np
from numpy.lib import format as npy_format
import pytest

from sge_jax.encode import encodings as encodings_lib
from sge_jax.evaluate import saved_rn, stage
from tests.evaluate.test_cli import _encoding_set, _write_run
from tests.fixtures.pipeline import resolved_run


@pytest.fixture(scope='module')
def made(tmp_path_factory):
  """(run directory, its config) with a trained rn.npz."""
  run_dir = tmp_path_factory.mktemp('run')
  config = _write_run(run_dir)
  stage.evaluate_run(resolved_run(config), encodings_lib.load_encodings(
      run_dir / 'encodings.npz'), run_dir)
  assert saved_rn.load_rn(run_dir / 'rn.npz').unusable is None
  return run_dir, config


def _arrays(path):
  with np.load(path) as data:
    return {name: data[name] for name in data.files}


def _rewrite(path, arrays):
  np.savez(path.with_suffix(''), **arrays)  # np.savez appends .npz


def _meta(arrays):
  return json.loads(str(arrays['meta']))


def _with_meta(arrays, change):
  meta = _meta(arrays)
  change(meta)
  return {**arrays, 'meta': np.asarray(json.dumps(meta))}


def _damaged_copy(made, tmp_path, damage):
  path = tmp_path / 'rn.npz'
  shutil.copy(made[0] / 'rn.npz', path)
  damage(path)
  return path


KERNEL = 'params/fixed/hidden/kernel'


def _set(name, value):
  return lambda path: _rewrite(path, {**_arrays(path), name: value})


def _drop(name):
  return lambda path: _rewrite(path, {k: v for k, v in _arrays(path).items()
                                      if k != name})


def _meta_change(change):
  return lambda path: _rewrite(path, _with_meta(_arrays(path), change))


def _truncate(path):
  path.write_bytes(path.read_bytes()[:300])


def _huge_headers(path):
  # Every rule's kernel claims 2**37 x 8 floats (4 TiB) but holds none.
  arrays = _arrays(path)
  kernels = [key for key in arrays if key.endswith('hidden/kernel')]
  _rewrite(path, {k: v for k, v in arrays.items() if k not in kernels})
  with zipfile.ZipFile(path, 'a') as archive:
    for key in kernels:
      with archive.open(key + '.npy', 'w') as member:
        npy_format.write_array_header_1_0(member, {
            'descr': '<f4', 'fortran_order': False, 'shape': (2**37, 8)})


DAMAGES = {
    'truncated': (_truncate, 'cannot be read'),
    'random bytes': (lambda p: p.write_bytes(os.urandom(2000)),
                     'cannot be read'),
    'empty': (lambda p: p.write_bytes(b''), 'cannot be read'),
    'no meta': (_drop('meta'), 'it has no meta text'),
    'meta not JSON': (_set('meta', np.asarray('{"fingerprint": ')),
                      'JSONDecodeError'),
    'meta a list': (_set('meta', np.asarray('[1, 2]')),
                    'no valid JSON object'),
    'meta nested 100000 deep': (_set('meta', np.asarray('[' * 100000)),
                                'cannot be read'),
    'meta as numbers': (_set('meta', np.arange(3)), 'it has no meta text'),
    'fingerprint lacks a field': (
        _meta_change(lambda m: m['fingerprint'].pop('encodings')),
        'no valid fingerprint'),
    'classes not ints': (_meta_change(lambda m: m.update(classes=['a', 'b'])),
                         'no valid classes'),
    'classes repeated': (_meta_change(lambda m: m.update(classes=[11, 11, 22])),
                         'no valid classes'),
    'hidden a string': (_meta_change(lambda m: m.update(hidden='8')),
                        'no valid hidden'),
    'no fixed epochs': (_meta_change(lambda m: m['epochs'].pop('fixed')),
                        'no valid epochs'),
    'an unknown rule': (_meta_change(lambda m: m['epochs'].update(best={})),
                        'no valid epochs'),
    'no history': (_meta_change(lambda m: m['summary'].pop('history')),
                   'no valid training history'),
    'a count as text': (_meta_change(
        lambda m: m['summary'].update(batch_size='16')), 'no valid summary'),
    'a kernel missing': (_drop(KERNEL), f'it lacks {KERNEL}'),
    'an integer kernel': (lambda p: _set(KERNEL, _arrays(p)[KERNEL].astype(
        np.int32))(p), 'is int32'),
    'a kernel of another width': (lambda p: _set(KERNEL, np.zeros(
        (5, 8), np.float32))(p), 'different input widths'),
    'a bias of another size': (_set('params/fixed/hidden/bias',
                                    np.zeros(9, np.float32)), '(9,), not float (8,)'),
    'an output for other classes': (_set('params/fixed/output/bias',
                                         np.zeros(4, np.float32)),
                                    'not float (3,)'),
    'a NaN weight': (lambda p: _set(KERNEL, np.full_like(
        _arrays(p)[KERNEL], np.nan))(p), 'holds NaN or Inf'),
    '4 TiB kernel headers': (_huge_headers, 'the header promises '
                             '4398046511104 bytes of data, the file holds 0'),
}


@pytest.mark.parametrize('name', list(DAMAGES))
def test_a_damaged_file_loads_as_unusable_with_the_reason(made, tmp_path,
                                                          name):
  damage, reason = DAMAGES[name]
  path = _damaged_copy(made, tmp_path, damage)
  saved = saved_rn.load_rn(path)
  assert saved is not None and saved.unusable is not None
  assert reason in saved.unusable
  assert '\n' not in saved.unusable
  assert saved.meta == {} and saved.params == {}


def test_parameters_larger_than_memory_are_not_read(made, tmp_path,
                                                    monkeypatch):
  from sge_jax.data import memory
  monkeypatch.setattr(memory, 'available_bytes',
                      lambda: (100, 'available on this machine'))
  path = _damaged_copy(made, tmp_path, lambda p: None)
  # 3 rules x (6 x 8 + 8 + 8 x 3 + 3) float32 weights = 996 bytes.
  assert saved_rn.load_rn(path).unusable == (
      'its parameters need 0.973 KiB, more than the 0.0977 KiB available on '
      'this machine')


@pytest.mark.parametrize('kind', ['fifo', 'directory'])
def test_a_path_that_is_no_regular_file_is_unusable_and_never_opened(
    tmp_path, kind):
  path = tmp_path / 'rn.npz'
  if kind == 'fifo':
    os.mkfifo(path)  # opening it would wait for a writer forever
  else:
    path.mkdir()
  saved = saved_rn.load_rn(path)
  assert saved.unusable == ('it is a FIFO (named pipe), not a regular file'
                            if kind == 'fifo' else
                            'it is a directory, not a regular file')


def test_extra_members_are_ignored(made, tmp_path):
  # A member the layout does not name is not read; the saved RN stays usable.
  path = _damaged_copy(made, tmp_path, lambda p: None)
  _rewrite(path, {**_arrays(path), 'junk': np.arange(1000),
                  'params/best/hidden/kernel': np.zeros((6, 8), np.float32)})
  saved = saved_rn.load_rn(path)
  assert saved.unusable is None and set(saved.params) == {'fixed', 'val',
                                                          'paper'}


@pytest.mark.parametrize('name', ['truncated', 'a kernel of another width',
                                  'meta nested 100000 deep', 'fifo',
                                  'forged input width'])
@pytest.mark.slow
def test_an_evaluation_trains_again_and_warns_naming_the_file(made, tmp_path,
                                                              name):
  run_dir, config = made
  workdir = tmp_path / 'eval'
  workdir.mkdir()
  path = workdir / 'rn.npz'
  if name == 'fifo':
    os.mkfifo(path)
  elif name == 'forged input width':
    # Every layout check passes, the fingerprint matches: only the encodings
    # show that the width is not theirs.
    arrays = _arrays(run_dir / 'rn.npz')
    for key in list(arrays):
      if key.endswith('hidden/kernel'):
        arrays[key] = np.zeros((7, 8), np.float32)
    _rewrite(path, arrays)
  else:
    shutil.copy(run_dir / 'rn.npz', path)
    DAMAGES[name][0](path)
  results = stage.evaluate_run(resolved_run(config), _encoding_set(), workdir)
  assert results['rn']['source'] == 'trained in this evaluation'
  warning, = [w for w in results['warnings'] if 'saved RN' in w]
  assert warning.startswith(f'The RN is trained again: the saved RN {path} is '
                            'unusable (')
  assert warning in results['notes']
  # The damaged file is replaced by the RN trained now, which re-scores.
  assert saved_rn.load_rn(path).unusable is None
  again = stage.evaluate_run(resolved_run(config), _encoding_set(), workdir)
  assert again['rn']['source'].startswith('re-scored from the saved RN')
  assert again['entries']['A/test']['rank1'] == results['entries'][
      'A/test']['rank1']


def test_a_directory_in_place_of_rn_npz_is_left_alone(made, tmp_path):
  _, config = made
  (tmp_path / 'rn.npz').mkdir()
  (tmp_path / 'rn.npz' / 'keep').write_text('mine')
  results = stage.evaluate_run(resolved_run(config), _encoding_set(), tmp_path)
  assert any('is a directory' in w for w in results['warnings'])
  assert (tmp_path / 'rn.npz' / 'keep').read_text() == 'mine'
