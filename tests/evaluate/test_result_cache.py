"""The baselines' stored results (sge_jax.evaluate.result_cache): read back only
for the very same computation, equal to a fresh one, harmless when damaged."""

import logging
import os
import stat

import numpy as np
import pytest

from sge_jax.config import get_config
from sge_jax.data import joints
from sge_jax.encode import encodings as encodings_lib
from sge_jax.evaluate import result_cache, stage
from sge_jax.evaluate.result_cache import ResultCache, digest_of
from tests.fixtures.pipeline import resolved_run

LAYOUT = joints.KINECT_V1


def test_values_read_back_equal_what_was_stored(tmp_path):
  value = {'metrics': {'rank1': 0.1 + 0.2, 'map': None, 'nan': float('nan'),
                       'inf': float('inf'), 'flag': True, 'count': 3,
                       'numpy': np.float64(1) / 3, 'cmc': [0.5, 1.0]},
           'roc': (np.linspace(0, 1, 7), np.arange(5, dtype=np.int32)),
           'skipped': 'no bones', 'empty': np.zeros((0, 4)),
           'nested': [(1, 'a'), {'x': np.eye(2, dtype=np.float32)}]}
  path = tmp_path / 'v.npz'
  path.write_bytes(result_cache.to_bytes(value))
  back = result_cache.from_file(path)
  assert back['metrics']['rank1'] == 0.1 + 0.2      # repr round trip, exact
  assert back['metrics']['numpy'] == np.float64(1) / 3
  assert np.isnan(back['metrics']['nan']) and back['metrics']['inf'] == np.inf
  assert back['metrics']['map'] is None and back['metrics']['flag'] is True
  assert isinstance(back['roc'], tuple)
  np.testing.assert_array_equal(back['roc'][0], value['roc'][0])
  assert back['roc'][1].dtype == np.int32
  assert back['empty'].shape == (0, 4)
  assert back['nested'][0] == (1, 'a')
  assert back['nested'][1]['x'].dtype == np.float32


def test_the_digest_tells_apart_every_input_that_changes_a_value():
  base = (np.arange(6.0).reshape(2, 3), 'euclidean', 1, None)
  same = digest_of('x', (np.arange(6.0).reshape(2, 3), 'euclidean', 1, None))
  assert digest_of('x', base) == same
  others = [
      ('y', base),
      ('x', (np.arange(6.0).reshape(3, 2), 'euclidean', 1, None)),   # shape
      ('x', (np.arange(6.0, dtype=np.float32).reshape(2, 3), 'euclidean', 1,
             None)),                                                   # dtype
      ('x', (np.arange(6.0).reshape(2, 3) + 1e-300, 'euclidean', 1, None)),
      ('x', (np.arange(6.0).reshape(2, 3), 'cosine', 1, None)),
      ('x', (np.arange(6.0).reshape(2, 3), 'euclidean', 1.0, None)),   # type
      ('x', (np.arange(6.0).reshape(2, 3), 'euclidean', 2, None)),
      ('x', (np.arange(6.0).reshape(2, 3), 'euclidean', 1, ())),
      ('x', [np.arange(6.0).reshape(2, 3), 'euclidean', 1, None]),     # list
      ('x', (np.arange(6.0).reshape(2, 3), 'euclidean', (1, None))),   # nesting
      ('x', (np.zeros((0, 3)), 'euclidean', 1, None)),                 # empty
      ('x', (np.zeros((3, 0)), 'euclidean', 1, None)),
      ('x', (np.arange(6.0).reshape(2, 3).T, 'euclidean', 1, None)),   # layout
      ('x', (np.array(['ab', 'c']), 'euclidean', 1, None)),
  ]
  digests = {digest_of(what, inputs) for what, inputs in others}
  assert same not in digests and len(digests) == len(others)


def test_the_same_computation_is_computed_once_and_another_again(tmp_path):
  calls = []

  def compute(value):
    calls.append(value)
    return {'value': value, 'array': np.full(3, value)}

  first = ResultCache(tmp_path / 'cache')
  assert first.get('sum', (1, np.ones(2)), lambda: compute(1.5))['value'] == 1.5
  second = ResultCache(tmp_path / 'cache')
  again = second.get('sum', (1, np.ones(2)), lambda: compute(9.0))
  assert again['value'] == 1.5 and calls == [1.5]
  assert second.get('sum', (2, np.ones(2)), lambda: compute(2.0))['value'] == 2.0
  assert calls == [1.5, 2.0]
  assert (first.record()['computed'], first.record()['reused']) == (1, 0)
  # Readable like every file of the run (another user re-evaluating it).
  umask = os.umask(0)
  os.umask(umask)
  modes = {stat.S_IMODE(stored.stat().st_mode)
           for stored in (tmp_path / 'cache').iterdir()}
  assert modes == {0o666 & ~umask}
  assert (second.record()['computed'], second.record()['reused']) == (1, 1)


def test_changed_evaluation_code_computes_again(tmp_path, monkeypatch):
  cache = ResultCache(tmp_path)
  cache.get('f', (1,), lambda: 1)
  monkeypatch.setattr(result_cache, '_ENVIRONMENT', b'other code or machine')
  assert cache.get('f', (1,), lambda: 2) == 2


@pytest.mark.parametrize('variable', ['OPENBLAS_CORETYPE', 'MKL_CBWR'])
def test_settings_that_pick_blas_kernels_enter_the_digest(monkeypatch,
                                                          variable):
  # OPENBLAS_CORETYPE=Prescott changes the baselines' distances in the last
  # bits on the same machine and numpy.
  monkeypatch.delenv(variable, raising=False)
  before = result_cache._environment_digest()
  monkeypatch.setenv(variable, 'Prescott')
  assert result_cache._environment_digest() != before


def test_inputs_it_cannot_tell_apart_are_computed_not_stored(tmp_path, caplog):
  masked = np.ma.array([1.0, 2.0], mask=[False, True])
  cache = ResultCache(tmp_path)
  with caplog.at_level(logging.WARNING):
    assert cache.get('f', (masked,), lambda: 5) == 5
  assert 'not stored' in caplog.text and not list(tmp_path.iterdir())
  fields = [np.zeros(2, dtype=[('a', 'f4'), ('b', 'f4')]),
            np.zeros(2, dtype=[('c', 'f4'), ('d', 'f4')])]
  assert digest_of('f', fields[0]) != digest_of('f', fields[1])
  times = np.array(['2026-12-07'], dtype='datetime64[D]')
  assert digest_of('f', times) != digest_of('f', times.astype('datetime64[s]'))


def test_evaluations_storing_the_same_file_at_once_both_succeed(tmp_path,
                                                                caplog):
  import threading
  value = {'v': np.arange(200_000.0)}
  caches = [ResultCache(tmp_path) for _ in range(4)]
  start = threading.Barrier(len(caches))

  def store(cache):
    start.wait()
    cache.get('f', (1,), lambda: value)

  threads = [threading.Thread(target=store, args=(c,)) for c in caches]
  with caplog.at_level(logging.WARNING):
    for thread in threads:
      thread.start()
    for thread in threads:
      thread.join()
  assert 'cannot be kept' not in caplog.text
  assert [p.name for p in tmp_path.iterdir()] == [
      _cache_file(tmp_path, 'f', (1,)).name]        # no temporary left
  np.testing.assert_array_equal(
      ResultCache(tmp_path).get('f', (1,), lambda: None)['v'], value['v'])


def test_a_cache_file_that_cannot_be_looked_at_is_a_miss(tmp_path, monkeypatch,
                                                        caplog):
  # As in a directory without search permission (root ignores modes, so the
  # refusal is simulated).
  path = _cache_file(tmp_path, 'f', (1,))
  real_stat = type(path).stat

  def refusing_stat(self, *args, **kwargs):
    if self == path:
      raise PermissionError(13, 'Permission denied', str(self))
    return real_stat(self, *args, **kwargs)

  monkeypatch.setattr(type(path), 'stat', refusing_stat)
  with caplog.at_level(logging.WARNING):
    assert ResultCache(tmp_path).get('f', (1,), lambda: 7) == 7
  assert 'cannot be read' in caplog.text


def _cache_file(directory, what, inputs):
  return directory / f'{what}-{digest_of(what, inputs)}.npz'


@pytest.mark.parametrize('damage', ['cut short', 'garbage', 'empty',
                                    'directory', 'fifo', 'pickle'])
def test_a_damaged_file_is_computed_again_and_replaced(tmp_path, damage,
                                                       caplog):
  cache = ResultCache(tmp_path)
  path = _cache_file(tmp_path, 'f', (1,))
  good = result_cache.to_bytes({'v': np.arange(4)})
  if damage == 'cut short':
    path.write_bytes(good[:len(good) // 2])
  elif damage == 'garbage':
    path.write_bytes(os.urandom(100))
  elif damage == 'empty':
    path.write_bytes(b'')
  elif damage == 'directory':
    path.mkdir()
  elif damage == 'fifo':
    os.mkfifo(path)                  # opening it would wait for a writer
  else:                              # an object array: needs a pickle to load
    np.savez(path, __tree__=np.frombuffer(b'{"__array__": "a0"}', np.uint8),
             a0=np.array([{'x': 1}], dtype=object))
  with caplog.at_level(logging.WARNING):
    value = cache.get('f', (1,), lambda: {'v': np.arange(4)})
  np.testing.assert_array_equal(value['v'], np.arange(4))
  assert 'cannot be read' in caplog.text and path.name in caplog.text
  if damage != 'directory':          # replaced by the good value
    assert ResultCache(tmp_path).get('f', (1,), lambda: None)['v'].size == 4


def test_a_place_that_cannot_be_written_computes_and_goes_on(tmp_path, caplog):
  blocked = tmp_path / 'file'
  blocked.write_text('not a directory')
  cache = ResultCache(blocked / 'cache')
  with caplog.at_level(logging.WARNING):
    assert cache.get('f', (1,), lambda: 3) == 3
    assert cache.get('f', (2,), lambda: 4) == 4
  assert caplog.text.count('cannot be kept') == 1     # said once


def test_values_of_kinds_it_cannot_store_are_returned_not_stored(tmp_path):
  cache = ResultCache(tmp_path)
  assert cache.get('f', (1,), lambda: {1: 'int key'}) == {1: 'int key'}
  assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------
# In the evaluation: the baselines of a re-evaluation are read back and equal
# a fresh evaluation's.


def _encoding_set():
  """train and test of 4 people, in walks of unequal length (one of a single
  window), duplicated sequences (tied distances) and one test person of
  three windows; sequences [n, 3, J, 3] m."""
  rng = np.random.default_rng(3)
  centres = rng.normal(size=(4, 6))
  shapes = 0.3 * rng.normal(size=(4, 1, LAYOUT.num_joints, 3))

  def split(walk_lengths, first_recording):
    labels, recordings = [], []
    for person, lengths in enumerate(walk_lengths):
      for walk, length in enumerate(lengths):
        labels += [person] * length
        recordings += [first_recording + 10 * person + walk] * length
    labels, recordings = np.array(labels), np.array(recordings)
    encodings = centres[labels][:, None] + 0.5 * rng.normal(
        size=(labels.size, 3, 6))
    sequences = shapes[labels] + 0.05 * rng.normal(
        size=(labels.size, 3, LAYOUT.num_joints, 3))
    sequences[1] = sequences[0]          # equal distances to every query
    encodings[1] = encodings[0]
    return encodings_lib.SplitEncodings(
        encodings.astype(np.float32), labels, sequences.astype(np.float32),
        recordings)

  metadata = encodings_lib.EncodingMetadata(
      dataset='KS20', length=3, attention='LA', pretext='rev_rec', hidden=2,
      seed=0, config_hash='cache', model_names=('rev_rec/x',),
      joint_names=LAYOUT.joint_names, bones=LAYOUT.bones)
  train = split([[4, 3], [5], [2, 2, 1], [6, 2]], 0)
  test = split([[3], [2, 2], [1, 4], [3]], 1000)
  return encodings_lib.combine_splits([('train', train), ('test', test)],
                                      metadata)


def _config():
  config = get_config()
  config.rn.epochs = 2
  config.rn.hidden = 8
  config.rn.batch_size = 8
  config.eval.plots = False
  config.eval.level = 'both'
  config.eval.protocols = 'A,B'
  config.eval.min_walk_windows = 2
  return config


def test_a_second_evaluation_reads_the_baselines_back_with_equal_numbers(
    tmp_path, caplog):
  encoding_set = _encoding_set()
  run = resolved_run(_config())
  first = stage.evaluate_run(run, encoding_set, tmp_path / 'run')
  with caplog.at_level(logging.INFO):
    again = stage.evaluate_run(run, encoding_set, tmp_path / 'run')
  assert '[eval] baselines: 5 of 5 computations read back from' in caplog.text
  elsewhere = stage.evaluate_run(run, encoding_set, tmp_path / 'other')
  stored = first['run']['stored_results']
  # A's three baselines, B's three, B's walk-level baselines.
  assert stored['reused'] == 0 and stored['computed'] == 5
  assert again['run']['stored_results'] == {**stored, 'reused': 5,
                                            'computed': 0}
  assert elsewhere['run']['stored_results']['reused'] == 0
  assert ('5 of 5 computations read back from eval_cache/'
          in (tmp_path / 'run' / 'report.md').read_text())
  assert 'B/test/walks-vote' in again['entries']
  assert 'baselines' in again['entries']['B/test/walks-mean-vs-windows']
  # Equal, float for float, to the evaluations that computed them.
  assert again['entries'] == first['entries'] == elsewhere['entries']


def test_other_settings_or_data_compute_the_baselines_again(tmp_path):
  encoding_set = _encoding_set()
  stage.evaluate_run(resolved_run(_config()), encoding_set, tmp_path)
  config = _config()
  config.eval.distance = 'cosine'
  cosine = stage.evaluate_run(resolved_run(config), encoding_set, tmp_path)
  assert cosine['run']['stored_results']['reused'] == 0
  fresh = stage.evaluate_run(resolved_run(config), encoding_set,
                             tmp_path / 'fresh')
  assert cosine['entries'] == fresh['entries']
  moved = _encoding_set()
  moved.sequences[5] += 0.01       # one test sequence of one person moved
  stage.evaluate_run(resolved_run(_config()), moved, tmp_path / 'moved')
  results = stage.evaluate_run(resolved_run(_config()), moved, tmp_path)
  assert results['run']['stored_results']['reused'] == 0
  assert results['entries'] == stage.evaluate_run(
      resolved_run(_config()), moved, tmp_path / 'moved')['entries']
