"""Walk-level protocols A and B (sge_jax.evaluate.walk_level) through the
evaluate stage, and the walk entries' numbers on hand-made inputs."""

import dataclasses
import json
import re

import numpy as np
import pytest

from sge_jax.config import EvalSettings, get_config
from sge_jax.data import joints
from sge_jax.encode import encodings as encodings_lib
from sge_jax.errors import DataError
from sge_jax.evaluate import report, stage, walk_evaluator, walk_level
from tests.fixtures.pipeline import resolved_run

LAYOUT = joints.KINECT_V1
LENGTH = 4
DIM = 8
TRAIN_PEOPLE = (1, 4, 7)


def _metadata():
  return encodings_lib.EncodingMetadata(
      dataset='walkers', length=LENGTH, attention='LA', pretext='rev_rec',
      hidden=4, seed=0, config_hash='test', model_names=('rev_rec/x',),
      joint_names=LAYOUT.joint_names, bones=LAYOUT.bones)


class _Walkers:
  """CAGEs with one centre per person and one offset per recording."""

  def __init__(self, seed=0):
    self.rng = np.random.default_rng(seed)
    self.centres = {p: 3.0 * self.rng.normal(size=DIM) for p in range(20)}
    self.next_recording = 0

  def split(self, walks, known=True):
    """walks: [(person, windows)], one recording each, in stored order."""
    encodings, labels, recordings = [], [], []
    for person, count in walks:
      offset = 0.5 * self.rng.normal(size=DIM)
      encodings.append(self.centres[person] + offset + 0.8 * self.rng.normal(
          size=(count, LENGTH, DIM)))
      labels += [person] * count
      recordings += [self.next_recording if known else -1] * count
      self.next_recording += 1
    labels = np.asarray(labels, np.int64)
    sequences = self.rng.normal(size=(labels.size, LENGTH,
                                      LAYOUT.num_joints, 3))
    return encodings_lib.SplitEncodings(
        np.concatenate(encodings).astype(np.float32), labels,
        sequences.astype(np.float32), np.asarray(recordings, np.int64))


def _encoding_set(known=True, shared_recording=False):
  walkers = _Walkers()
  train = walkers.split([(p, 5) for p in TRAIN_PEOPLE for _ in range(2)],
                        known)
  # Person 9 is not trained; person 7's second walk has a single window.
  test = walkers.split([(1, 4), (1, 3), (4, 4), (4, 2), (7, 4), (7, 1),
                        (9, 3)], known)
  if shared_recording:
    recordings = test.recordings.copy()
    recordings[:4] = train.recordings[0]
    test = encodings_lib.SplitEncodings(test.encodings, test.labels,
                                        test.sequences, recordings)
  return encodings_lib.combine_splits([('train', train), ('test', test)],
                                      _metadata())


def _config(**eval_fields):
  config = get_config()
  config.rn.epochs = 20
  config.rn.hidden = 16
  config.rn.batch_size = 16
  config.rn.learning_rate = 5e-3
  config.rn.epochs_per_call = 20
  config.eval.plots = False
  for field, value in eval_fields.items():
    config.eval[field] = value
  return config


def _run(**eval_fields):
  """The settings ``_config(**eval_fields)`` resolves to."""
  return resolved_run(_config(**eval_fields))


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  encoding_set = _encoding_set()
  return {level: stage.evaluate_run(_run(level=level), encoding_set,
                                    tmp_path_factory.mktemp(level))
          for level in ('both', 'window', 'walk')}


def test_window_entries_are_identical_with_and_without_walks(runs):
  both, window = runs['both'], runs['window']
  window_keys = list(window['entries'])
  assert window_keys == ['A/test', 'B/test']
  for key in window_keys:
    assert json.dumps(both['entries'][key], sort_keys=True) == json.dumps(
        window['entries'][key], sort_keys=True)
  for field in ('headline', 'rank1', 'nauc', 'map', 'cmc'):
    assert both[field] == window[field]
  assert window['walks']['aggregations'] == {}


def test_walk_entries_are_added_for_a_and_b(runs):
  keys = [key for key, entry in runs['both']['entries'].items()
          if walk_level.is_walk_entry(entry)]
  # eval.walk_aggregation='auto': A lists mean first, B vote.
  assert keys == ['A/test/walks-mean', 'A/test/walks-vote',
                  'B/test/walks-vote', 'B/test/walks-mean',
                  'B/test/walks-vote-vs-windows',
                  'B/test/walks-mean-vs-windows']
  walks = runs['both']['walks']
  assert walks == {'level': 'both',
                   'aggregations': {'A': ['mean', 'vote'],
                                    'B': ['vote', 'mean']},
                   'min_walk_windows': 2,
                   'num_walks': {'train': 6, 'test': 7}}


def test_each_walk_entry_follows_its_window_entry(runs):
  assert list(runs['both']['entries']) == [
      'A/test', 'A/test/walks-mean', 'A/test/walks-vote', 'B/test',
      'B/test/walks-vote', 'B/test/walks-mean', 'B/test/walks-vote-vs-windows',
      'B/test/walks-mean-vs-windows']


def test_the_walk_level_is_the_evaluator_of_the_windows_a_and_b_hand_over(
    runs):
  # A and B score windows only and hand them over; the walk-level evaluator
  # turns them into the walk entries, as the stage does.
  from sge_jax.evaluate import protocol_a, protocol_b
  from sge_jax.evaluate.evaluator import EvaluationInputs
  from sge_jax.evaluate.released_rows import ReleasedRows
  run = _run(level='both')
  encoding_set = _encoding_set()
  outcomes = [protocol_a.protocol_a(encoding_set, run.rn, run.eval),
              protocol_b.protocol_b(encoding_set, run.eval)]
  for outcome in outcomes:
    assert not any(walk_level.is_walk_entry(entry)
                   for entry in outcome.entries.values())
  handed = [windows for outcome in outcomes
            for windows in outcome.window_results]
  assert [type(windows).__name__ for windows in handed] == [
      'ClassifiedWindows', 'RankedWindows']
  assert walk_evaluator.EVALUATOR.name == 'walks'
  walks = walk_evaluator.EVALUATOR.evaluate(EvaluationInputs(
      run=run, encoding_set=encoding_set, rn_settings=run.rn,
      rows=ReleasedRows(), saved_rn_path=None, window_results=tuple(handed)))
  expected = {key: entry for key, entry in runs['both']['entries'].items()
              if walk_level.is_walk_entry(entry)}
  assert json.dumps(walks.entries, sort_keys=True) == json.dumps(
      expected, sort_keys=True)
  # Without walks asked for, nothing is handed over.
  window_only = _run(level='window')
  assert not protocol_b.protocol_b(encoding_set,
                                   window_only.eval).window_results


def test_walk_counts_exclusions_and_short_walks(runs):
  entry = runs['both']['entries']['A/test/walks-mean']
  # Person 9's walk is excluded (not trained); person 7's 1-window walk is short.
  assert entry['excluded_people'] == [9]
  assert entry['num_excluded'] == 3
  assert entry['num_short_walks'] == 1
  assert entry['num_short_walk_windows'] == 1
  assert entry['num_walks'] == 5
  assert entry['num_sequences'] == 4 + 3 + 4 + 2 + 4
  assert entry['windows_per_walk'] == {'min': 2, 'median': 4.0, 'max': 4}
  assert entry['num_classes'] == 3
  assert len(entry['cmc']) == 3 and entry['cmc'][-1] == 1.0
  assert set(entry['baselines']) == {'raw_coordinates', 'bone_length',
                                     'gait_descriptor'}
  retrieval = runs['both']['entries']['B/test/walks-mean']
  assert retrieval['num_gallery'] == 6          # train walks
  vs_windows = runs['both']['entries']['B/test/walks-mean-vs-windows']
  assert vs_windows['num_gallery'] == 30        # train windows
  assert vs_windows['gallery_level'] == 'window'


def test_separable_walks_are_all_recognised(runs):
  entries = runs['both']['entries']
  for key, entry in entries.items():
    if walk_level.is_walk_entry(entry):
      assert entry['rank1'] == 1.0, key


def test_level_walk_reports_only_walks_with_a_walk_headline(runs):
  walk = runs['walk']
  assert all(walk_level.is_walk_entry(e) for e in walk['entries'].values())
  assert walk['headline'] == 'A/test/walks-mean'    # A's default aggregation
  assert walk['rank1'] == walk['entries']['A/test/walks-mean']['rank1']


def test_report_has_walk_tables_next_to_window_tables(runs, tmp_path):
  text = report.render_markdown(runs['both'])
  assert text.count('### Walk level') == 2
  assert '| test walks -> train windows | CAGEs NN (concat) | mean |' in text
  assert 'vote (default)' in text and 'mean (default)' in text
  assert '| mean |' in text and '| vote |' in text
  lines = report.summary_lines(runs['both'])
  assert any(line.startswith('A/test/walks-vote') and '5 walks of 17 windows'
             in line for line in lines)


def test_mean_is_the_headline_aggregation_when_configured(tmp_path):
  results = stage.evaluate_run(
      _run(level='walk', walk_aggregation='mean', baselines=False,
              protocols='B'), _encoding_set(), tmp_path)
  assert list(results['entries'])[0] == 'B/test/walks-mean'
  assert results['headline'] == 'B/test/walks-mean'
  assert results['walks']['aggregations'] == {'B': ['mean', 'vote']}


def test_an_explicit_aggregation_applies_to_both_protocols(tmp_path):
  results = stage.evaluate_run(_run(walk_aggregation='vote', baselines=False),
                               _encoding_set(), tmp_path)
  assert results['walks']['aggregations'] == {'A': ['vote', 'mean'],
                                              'B': ['vote', 'mean']}
  keys = [key for key in results['entries'] if '/walks-' in key]
  assert keys[0] == 'A/test/walks-vote' and keys[2] == 'B/test/walks-vote'


def test_min_walk_windows_leaves_out_more_walks(tmp_path):
  results = stage.evaluate_run(
      _run(min_walk_windows=4, baselines=False, protocols='B'),
      _encoding_set(), tmp_path)
  entry = results['entries']['B/test/walks-mean']
  assert entry['num_walks'] == 3               # the three 4-window walks
  assert entry['num_short_walks'] == 3
  assert entry['num_short_walk_windows'] == 3 + 2 + 1


def test_no_walk_long_enough_skips_the_walk_entries(tmp_path):
  results = stage.evaluate_run(
      _run(min_walk_windows=50, baselines=False, protocols='B'),
      _encoding_set(), tmp_path)
  entry = results['entries']['B/test/walks-mean']
  assert 'at least 50 windows' in entry['skipped']
  assert results['headline'] == 'B/test'
  with pytest.raises(DataError, match='no walk could be scored'):
    stage.evaluate_run(_run(level='walk', min_walk_windows=50,
                               baselines=False, protocols='B'),
                       _encoding_set(), tmp_path / 'walk')


def test_data_without_recordings_is_scored_at_window_level_with_a_note(
    tmp_path):
  results = stage.evaluate_run(_run(baselines=False, protocols='B'),
                               _encoding_set(known=False), tmp_path)
  assert list(results['entries']) == ['B/test']
  assert any('No walk level for split test: the data does not say which '
             'recording' in note for note in results['notes'])
  assert results['walks']['num_walks'] == {'train': None, 'test': None}
  with pytest.raises(DataError, match="level='walk'"):
    stage.evaluate_run(_run(level='walk', protocols='B'),
                       _encoding_set(known=False), tmp_path / 'walk')


def test_a_recording_in_train_and_test_skips_the_walks_with_a_warning(
    tmp_path):
  results = stage.evaluate_run(_run(baselines=False), _encoding_set(
      shared_recording=True), tmp_path)
  # The window level is scored and written as always; no walk entry.
  assert list(results['entries']) == ['A/test', 'B/test']
  assert (tmp_path / 'results.json').exists()
  warnings = [w for w in results['warnings'] if w.startswith('No walk level')]
  assert len(warnings) == 2                         # protocols A and B
  assert 'hold sequences of both the train and the test split' in warnings[0]
  assert '--config.eval.level=window' in warnings[0]
  # Each protocol's walk warning follows that protocol's own warnings.
  assert [w.split(':')[0].split(',')[0] for w in results['warnings']] == [
      'Protocol A', 'No walk level for test', 'Protocol B',
      'No walk level for Protocol B']
  with pytest.raises(DataError, match="no walk could be scored.*both the "
                     'train and the test split'):
    stage.evaluate_run(_run(level='walk', baselines=False),
                       _encoding_set(shared_recording=True), tmp_path / 'w')


def test_a_recording_with_two_people_skips_the_walks(tmp_path):
  encoding_set = _encoding_set()
  test = encoding_set.split == 'test'
  recording = encoding_set.recording.copy()
  rows = np.flatnonzero(test)
  recording[rows[7]] = recording[rows[0]]   # person 4's first window, walk 0
  mixed = dataclasses.replace(encoding_set, recording=recording)
  results = stage.evaluate_run(_run(baselines=False, protocols='B'), mixed,
                               tmp_path)
  assert list(results['entries']) == ['B/test']
  assert any('holds windows of people [1, 4]' in w
             for w in results['warnings'])


def test_walks_without_gallery_recordings_still_give_a_walk_headline(
    tmp_path):
  encoding_set = _encoding_set()
  recording = np.where(encoding_set.split == 'train', -1,
                       encoding_set.recording)
  results = stage.evaluate_run(
      _run(level='walk', baselines=False, protocols='B'),
      dataclasses.replace(encoding_set, recording=recording), tmp_path)
  assert 'skipped' in results['entries']['B/test/walks-mean']
  assert results['headline'] == 'B/test/walks-vote-vs-windows'
  assert not any('No walk level for split' in n for n in results['notes'])


def test_released_row_rules_leave_protocol_a_at_window_level(tmp_path):
  config = _config(baselines=False)
  config.quirks.extraction_batches = True
  results = stage.evaluate_run(resolved_run(config), _encoding_set(), tmp_path)
  keys = list(results['entries'])
  assert 'A/test/walks-mean' not in keys and 'B/test/walks-mean' in keys
  assert any('released row rules' in note for note in results['notes'])


# ---------------------------------------------------------------- numbers


def test_classification_walks_aggregate_the_given_window_scores():
  # Walk 0 (person 0): a confident window for class 0, two weak ones for 1.
  # Walk 1 (person 1): two windows for class 1.
  scores = np.array([[9.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 2.0],
                     [0.0, 2.0]])
  recordings = np.array([10, 10, 10, 11, 11])
  labels = np.array([0, 0, 0, 1, 1])
  baseline = -scores       # a baseline that gets every window wrong
  entries, rocs = walk_level.classification_entries(
      {'protocol': 'A', 'probe': 'test', 'label': 'test walks'}, 'test',
      scores, recordings, labels, np.array([0, 1]),
      {'inverse': (baseline, 'inverse scores'), 'broken': 'no bones'},
      EvalSettings(), 'hand-made')
  mean, vote = entries['A/test/walks-mean'], entries['A/test/walks-vote']
  assert mean['rank1'] == 1.0 and vote['rank1'] == 0.5
  assert mean['baselines']['inverse']['rank1'] == 0.0
  assert mean['baselines']['broken'] == {'skipped': 'no bones'}
  assert 'walk = mean of its windows' in (
      mean['baselines']['inverse']['description'])
  assert set(rocs['A/test/walks-mean']) == {'CAGEs', 'inverse'}


def test_retrieval_walks_against_gallery_walks_and_windows():
  # 1-D features. Probe walk (person 0): windows at 0 and 4, mean 2.
  # Gallery: person 0 walk {1.9, 2.1} (mean 2), person 1 walk {0.1, 9.9}
  # (mean 5).
  probe = np.array([[0.0], [4.0]])
  gallery = np.array([[1.9], [2.1], [0.1], [9.9]])
  gallery_labels = np.array([0, 0, 1, 1])
  gallery_recordings = np.array([20, 20, 21, 21])
  entries = walk_level.retrieval_entries(
      {'protocol': 'B', 'probe': 'p', 'gallery': 'g'}, 'p', ('p', 'g'),
      {'CAGEs': (probe, gallery)}, np.array([5, 5]), np.array([0, 0]),
      gallery_labels, gallery_recordings,
      EvalSettings(baselines=False), 'hand-made', str)
  # Mean vs gallery walks: walk mean 2 is at 0 from person 0's walk mean 2.
  assert entries['B/p/walks-mean']['rank1'] == 1.0
  assert entries['B/p/walks-mean']['num_gallery'] == 2
  # Mean vs windows: nearest windows 1.9 and 2.1 are person 0's.
  assert entries['B/p/walks-mean-vs-windows']['rank1'] == 1.0
  assert entries['B/p/walks-mean-vs-windows']['map'] == 1.0
  # Vote vs windows: window 0 -> 0.1 (person 1), window 4 -> 2.1 (person 0):
  # one vote each, so the mean-feature distance decides: person 0 first.
  assert entries['B/p/walks-vote-vs-windows']['rank1'] == 1.0
  # Vote vs walks: the votes are the same window decisions (one each); the
  # walk means 2 (person 0) and 5 (person 1) are ranked, distance decides.
  assert entries['B/p/walks-vote']['rank1'] == 1.0
  assert entries['B/p/walks-vote']['label'] == 'p walks -> g walks'


def test_equally_near_gallery_items_of_two_people_split_the_vote():
  # Both windows sit exactly between a person-0 item (at 1) and a person-1
  # item (at -1): each window's vote is split, and the walk mean (0) is as far
  # from both, so every key ties and the correct match ranks second.
  probe = np.array([[0.0], [0.0]])
  gallery = np.array([[1.0], [-1.0]])
  entries = walk_level.retrieval_entries(
      {'protocol': 'B', 'probe': 'p', 'gallery': 'g'}, 'p', ('p', 'g'),
      {'CAGEs': (probe, gallery)}, np.array([3, 3]), np.array([0, 0]),
      np.array([0, 1]), np.array([-1, -1]),
      EvalSettings(baselines=False), 'hand-made', str)
  assert entries['B/p/walks-vote-vs-windows']['rank1'] == 0.0
  assert entries['B/p/walks-vote-vs-windows']['rank5'] is None
  assert entries['B/p/walks-vote-vs-windows']['cmc'] == [0.0, 1.0]


def test_retrieval_vote_outvotes_the_mean():
  # Probe walk of person 0: windows at 0, 0 and 30 (mean 10). Gallery
  # windows: person 0 at 0, person 1 at 10. Mean -> person 1; vote -> 0.
  probe = np.array([[0.0], [0.0], [30.0]])
  gallery = np.array([[0.0], [10.0]])
  entries = walk_level.retrieval_entries(
      {'protocol': 'B', 'probe': 'p', 'gallery': 'g'}, 'p', ('p', 'g'),
      {'CAGEs': (probe, gallery)}, np.array([1, 1, 1]), np.array([0, 0, 0]),
      np.array([0, 1]), np.array([-1, -1]),
      EvalSettings(baselines=False), 'hand-made', str)
  assert entries['B/p/walks-mean-vs-windows']['rank1'] == 0.0
  assert entries['B/p/walks-vote-vs-windows']['rank1'] == 1.0
  # The gallery's recordings are unknown: no gallery walks.
  assert 'recordings are unknown' in entries['B/p/walks-mean']['skipped']


def test_a_bad_recording_id_is_named_in_the_note(tmp_path):
  encoding_set = _encoding_set()
  recording = encoding_set.recording.copy()
  test_rows = np.flatnonzero(encoding_set.split == 'test')
  recording[test_rows[[2, 5]]] = -7
  encoding_set = dataclasses.replace(encoding_set, recording=recording)
  results = stage.evaluate_run(_run(baselines=False, protocols='B'),
                               encoding_set, tmp_path)
  note = next(n for n in results['notes'] if 'No walk level for split test' in n)
  assert '2 of 21 windows have no valid recording id (-7;' in note
  assert '.npz format' not in note


def test_protocol_b_computes_each_probe_window_distance_block_once(
    monkeypatch, caplog):
  # The window level and the walk level's votes share one pass per method
  # over the probe windows x gallery windows distances (it was three: CMC,
  # mAP, votes), and every pass reports its progress.
  import sys
  from sge_jax import progress
  from sge_jax.evaluate import metrics, protocol_b
  encoding_set = _encoding_set()
  probe_windows = 4 + 3 + 4 + 2 + 4 + 1     # test windows of trained people
  gallery_windows = 30
  passes = []
  for module in (metrics, sys.modules.get('sge_jax.evaluate.distances')):
    if module is None:
      continue
    real = module.iter_pairwise_distances

    def counted(query, gallery, *args, real=real, **kwargs):
      passes.append((np.shape(query)[0], np.shape(gallery)[0]))
      return real(query, gallery, *args, **kwargs)

    monkeypatch.setattr(module, 'iter_pairwise_distances', counted)
    if hasattr(module, '_BLOCK_ELEMENTS'):
      monkeypatch.setattr(module, '_BLOCK_ELEMENTS', 5 * gallery_windows)
  monkeypatch.setattr(progress, 'INTERVAL_S', 0.0)
  with caplog.at_level('INFO'):
    window_outcome = protocol_b.protocol_b(encoding_set, EvalSettings())
    outcome = walk_evaluator.score_walks(window_outcome.window_results,
                                     EvalSettings(), 'KS20')
  methods = 1 + 3                           # CAGEs and three baselines
  assert passes.count((probe_windows, gallery_windows)) == methods
  assert 'rank1' in outcome.entries['B/test/walks-vote-vs-windows']
  pattern = re.compile(r'\[eval\] protocol B test -> train, CAGEs: '
                       r'(\d+)/18 queries \((\d+\.\d)%\), ETA \d+:\d\d')
  done = [pattern.fullmatch(m) for m in caplog.messages
          if m.startswith('[eval] protocol B test -> train, CAGEs: ')]
  assert len(done) >= 3 and all(done)
  counts = [int(match.group(1)) for match in done]
  assert counts == sorted(set(counts)) and counts[-1] < 18
  assert [match.group(2) for match in done] == [
      f'{100 * count / 18:.1f}' for count in counts]


def test_walk_votes_from_the_window_level_equal_votes_computed_alone():
  rng = np.random.default_rng(5)
  probe = rng.integers(0, 3, size=(6, 2)).astype(float)   # distance ties
  gallery = rng.integers(0, 3, size=(8, 2)).astype(float)
  gallery_labels = np.array([3, 3, 5, 5, 8, 8, 8, 3])
  collected = walk_level.WindowVotes(6, gallery_labels)
  from sge_jax.evaluate import metrics
  for start, block in metrics.iter_pairwise_distances(probe, gallery):
    collected(start, block)
  people, columns = np.unique(gallery_labels, return_inverse=True)
  np.testing.assert_array_equal(
      collected.votes, walk_level._nearest_people(probe, gallery, columns,
                                                  people.size, 'euclidean'))
  # Brute force: each window splits its vote among the people of its
  # equally nearest gallery items.
  for row, window in enumerate(probe):
    dist = np.linalg.norm(gallery - window, axis=1)
    voted = np.unique(gallery_labels[dist == dist.min()])
    expected = np.isin(people, voted) / voted.size
    np.testing.assert_array_equal(collected.votes[row], expected)
