"""Tests of the evaluation protocols, the baselines in them and the reports."""

import dataclasses
import json
import math
import sys

import numpy as np
import pytest

from sge_jax.config import get_config
from sge_jax.data import joints
from sge_jax.encode import encodings as encodings_lib
from sge_jax.errors import ConfigError, DataError
from sge_jax.evaluate import baselines, metrics, report, stage
from sge_jax.evaluate import results as results_lib
from tests.fixtures.pipeline import resolved_run

LAYOUT = joints.KINECT_V1
LENGTH = 4
DIM = 8


def _metadata(dataset, bones=LAYOUT.bones, joint_names=LAYOUT.joint_names,
              length=LENGTH):
  return encodings_lib.EncodingMetadata(
      dataset=dataset, length=length, attention='LA', pretext='rev_rec',
      hidden=4, seed=0, config_hash='test', model_names=('rev_rec/x',),
      joint_names=joint_names, bones=bones)


def _split(encodings, labels, num_joints=LAYOUT.num_joints, rng=None):
  """A split with the given CAGEs [n, f, D] and random sequences."""
  encodings = np.asarray(encodings, np.float32)
  labels = np.asarray(labels, np.int64)
  rng = rng or np.random.default_rng(0)
  sequences = rng.normal(size=(labels.size, encodings.shape[1], num_joints, 3))
  return encodings_lib.SplitEncodings(
      encodings, labels, sequences.astype(np.float32),
      np.full(labels.size, -1, np.int64))


class _People:
  """Separable CAGEs: one centre per person, small per-frame noise."""

  def __init__(self, seed=0):
    self.rng = np.random.default_rng(seed)
    self.centres = {}

  def split(self, people, per_person):
    labels = np.repeat(np.asarray(people), per_person)
    for person in people:
      if person not in self.centres:
        self.centres[person] = 3.0 * self.rng.normal(size=DIM)
    centres = np.stack([self.centres[p] for p in labels])
    encodings = centres[:, None] + 0.2 * self.rng.normal(
        size=(labels.size, LENGTH, DIM))
    return _split(encodings, labels, rng=self.rng)


def _config(**sections):
  config = get_config()
  config.rn.epochs = 30
  config.rn.hidden = 16
  config.rn.batch_size = 16
  config.rn.learning_rate = 5e-3
  config.rn.epochs_per_call = 30
  for dotted, value in sections.items():
    section, field = dotted.split('__')
    config[section][field] = value
  return config


def _run(**sections):
  """The settings ``_config(**sections)`` resolves to."""
  return resolved_run(_config(**sections))


@pytest.fixture(scope='module')
def ias_run(tmp_path_factory):
  """IAS-like set: train + A + B; person 99 of B never trained."""
  people = _People()
  trained = [1, 4, 7, 10]
  encoding_set = encodings_lib.combine_splits(
      [('train', people.split(trained, 6)), ('A', people.split(trained, 2)),
       ('B', people.split(trained + [99], 2))], _metadata('IAS'))
  workdir = tmp_path_factory.mktemp('ias')
  results = stage.evaluate_run(_run(), encoding_set, workdir)
  return results, workdir


class TestProtocolA:

  @pytest.mark.slow
  def test_probe_sets_reported_separately(self, ias_run):
    results, _ = ias_run
    entries = results['entries']
    assert list(entries) == ['A/A', 'A/B', 'B/A', 'B/B']
    assert entries['A/A']['label'] == 'IAS-A'
    assert entries['A/B']['label'] == 'IAS-B'
    for key in ('A/A', 'A/B'):
      entry = entries[key]
      assert entry['num_classes'] == 4
      assert entry['rank1'] >= 0.95
      assert entry['nauc'] > 0.95
      assert len(entry['cmc']) == 4 and entry['cmc'][-1] == 1.0
      assert entry['rank10'] is None  # only 4 classes
      assert entry['selection'] == 'val'
      assert set(entry['by_selection']) == {'val', 'fixed', 'paper'}
      assert entry['by_selection']['paper']['label'] == (
          'paper (best test epoch; optimistic)')

  def test_people_missing_from_train_are_excluded_and_counted(self, ias_run):
    results, _ = ias_run
    entry = results['entries']['A/B']
    assert entry['num_sequences'] == 8
    assert entry['num_excluded'] == 2
    assert entry['excluded_people'] == [99]
    assert entry['num_people'] == 4
    assert results['entries']['A/A']['num_excluded'] == 0
    assert any('IAS-B' in note and '[99]' in note and 'excluded' in note
               for note in results['notes'])

  def test_confusion_matrix_of_the_selected_rule(self, ias_run):
    results, workdir = ias_run
    saved = json.loads((workdir / 'results.json').read_text())
    for key in ('A/A', 'A/B'):
      entry = saved['entries'][key]
      matrix = np.asarray(entry['confusion_matrix']['counts'])
      assert entry['confusion_matrix']['classes'] == [1, 4, 7, 10]
      assert matrix.shape == (4, 4)
      # Every scored sequence once, in its true person's row (2 per person;
      # person 99 of IAS-B is excluded), and the diagonal is Rank-1.
      np.testing.assert_array_equal(matrix.sum(axis=1), [2, 2, 2, 2])
      assert np.trace(matrix) == round(entry['rank1'] * 8)
    assert not any('confusion_matrix' in entry
                   for key, entry in saved['entries'].items()
                   if not key.startswith('A/'))

  def test_headline_is_the_first_protocol_a_split(self, ias_run):
    results, _ = ias_run
    assert results['headline'] == 'A/A'
    assert results['protocol'] == 'A'
    assert results['rank1'] == results['entries']['A/A']['rank1']
    assert results['nauc'] == results['entries']['A/A']['nauc']

  def test_baselines_scored_on_the_same_split(self, ias_run):
    results, _ = ias_run
    for entry in results['entries'].values():
      assert set(entry['baselines']) == set(baselines.BASELINES)
      for baseline in entry['baselines'].values():
        assert 0.0 <= baseline['rank1'] <= 1.0
        assert 'description' in baseline
    # Protocol A baselines use the RN's classes: CMC length C.
    assert len(results['entries']['A/B']['baselines']['bone_length']['cmc']
               ) == 4

  def test_baseline_numbers_match_run_baseline(self, ias_run):
    results, _ = ias_run
    # Rebuild the fixture's train and A splits (same draws, same order) and
    # score one protocol-A baseline directly.
    people = _People()
    trained = [1, 4, 7, 10]
    train = people.split(trained, 6)
    test_a = people.split(trained, 2)
    expected = baselines.run_baseline(
        'raw_coordinates', train.sequences, train.labels, test_a.sequences,
        classes=np.unique(train.labels))
    columns = np.searchsorted(np.unique(train.labels), test_a.labels)
    assert results['entries']['A/A']['baselines']['raw_coordinates'][
        'rank1'] == pytest.approx(metrics.rank_k(expected.scores, columns, 1))

  def test_biwi_walking_and_still(self, tmp_path):
    people = _People(1)
    encoding_set = encodings_lib.combine_splits(
        [('train', people.split([2, 3, 5], 4)),
         ('Walking', people.split([2, 3, 5], 2)),
         ('Still', people.split([2, 3], 2))], _metadata('BIWI'))
    results = stage.evaluate_run(
        _run(eval__protocols='A', eval__baselines=False,
                rn__selection='fixed', rn__epochs=5),
        encoding_set, tmp_path)
    assert list(results['entries']) == ['A/Walking', 'A/Still']
    assert results['entries']['A/Walking']['label'] == 'BIWI Walking'
    assert results['entries']['A/Still']['label'] == 'BIWI Still'
    assert results['entries']['A/Still']['num_sequences'] == 4
    assert 'baselines' not in results['entries']['A/Walking']
    assert results['rn']['selection'] == 'fixed'
    assert results['entries']['A/Still']['selected_epoch'] == 5

  def test_no_train_split_skips_protocol_a(self, tmp_path):
    people = _People(2)
    encoding_set = encodings_lib.combine_splits(
        [('gallery', people.split([1, 2], 2)),
         ('probe', people.split([1, 2], 1))], _metadata('KGBD'))
    results = stage.evaluate_run(_run(eval__baselines=False),
                                      encoding_set, tmp_path)
    assert list(results['entries']) == ['B/probe']
    assert results['rn'] is None
    assert any('Protocol A skipped' in note for note in results['notes'])


def _line_set(dataset, gallery_values, gallery_labels, probe_values,
              probe_labels, gallery_name='train', probe_name='test'):
  """CAGEs with f = 1 and D = 1: a sequence is a point on a line."""
  def split(values, labels):
    return _split(np.asarray(values, float).reshape(-1, 1, 1), labels,
                  num_joints=3)
  return encodings_lib.combine_splits(
      [(gallery_name, split(gallery_values, gallery_labels)),
       (probe_name, split(probe_values, probe_labels))],
      _metadata(dataset, bones=None, joint_names=None, length=1))


class TestProtocolB:

  def test_map_on_a_hand_built_case(self, tmp_path):
    # Gallery (train): person 1 at 0 and 10, person 2 at 1.
    # Probe person 1 at 0.9: distances 0.9 (1), 0.1 (2), 9.1 (1) -> order
    #   2, 1, 1: correct at ranks 2 and 3, AP = (1/2 + 2/3) / 2 = 7/12.
    # Probe person 2 at 1.2: nearest is person 2 at 1 -> AP = 1.
    encoding_set = _line_set('KS20', [0.0, 10.0, 1.0], [1, 1, 2], [0.9, 1.2],
                             [1, 2])
    results = stage.evaluate_run(
        _run(eval__protocols='B', eval__baselines=False), encoding_set,
        tmp_path)
    entry = results['entries']['B/test']
    assert entry['gallery'] == 'train'
    assert entry['map'] == pytest.approx((7 / 12 + 1) / 2)
    assert entry['rank1'] == pytest.approx(0.5)
    assert entry['cmc'] == pytest.approx([0.5, 1.0, 1.0])
    assert entry['rank5'] is None  # only 3 gallery sequences
    assert results['headline'] == 'B/test'
    assert results['map'] == entry['map']
    assert results['retrieval']['features'] == 'concat'

  def test_probe_against_gallery_when_both_exist(self, tmp_path):
    encoding_set = _line_set('KGBD', [0.0, 5.0], [1, 2], [4.0, 0.5, 9.0],
                             [1, 2, 3], gallery_name='gallery',
                             probe_name='probe')
    results = stage.evaluate_run(
        _run(eval__protocols='B', eval__baselines=False), encoding_set,
        tmp_path)
    entry = results['entries']['B/probe']
    assert (entry['probe'], entry['gallery']) == ('probe', 'gallery')
    # Person 3 has no gallery sequence: excluded; the other two are misses.
    assert (entry['num_sequences'], entry['num_excluded']) == (2, 1)
    assert entry['rank1'] == 0.0
    assert entry['map'] == pytest.approx(0.5)

  def test_mean_representation(self, tmp_path):
    people = _People(3)
    encoding_set = encodings_lib.combine_splits(
        [('train', people.split([1, 2, 3], 3)),
         ('test', people.split([1, 2, 3], 2))], _metadata('KS20'))
    results = stage.evaluate_run(
        _run(eval__protocols='B', eval__baselines=False,
                eval__retrieval_features='mean'), encoding_set, tmp_path)
    assert results['entries']['B/test']['features'] == 'mean'
    assert results['entries']['B/test']['rank1'] == 1.0
    assert 'mean over the f frames' in (tmp_path / 'report.md').read_text()

  def test_unknown_settings_are_config_errors(self, tmp_path):
    encoding_set = _line_set('KS20', [0.0], [1], [0.0], [1])
    for field, value in (('protocols', 'A,C'), ('distance', 'manhattan'),
                         ('retrieval_features', 'max')):
      with pytest.raises(ConfigError, match=f'config.eval.{field}'):
        stage.evaluate_run(_run(**{f'eval__{field}': value}),
                                encoding_set, tmp_path)


class TestCME:

  # Points on a line: a 0.0 (p1), b 0.1 (p1), c 1.0 (p2), d 1.05 (p3),
  # e 1.2 (p2). Nearest OTHER point: a->b ok, b->a ok, c->d wrong, d->c wrong,
  # e->d wrong: Rank-1 = 2/5. Counting the point itself would give 5/5.
  VALUES = [0.0, 0.1, 1.0, 1.05, 1.2]
  LABELS = [1, 1, 2, 3, 2]

  def test_self_match_skipped_for_equal_conditions(self, tmp_path):
    encoding_set = _line_set('CASIA_B_match', self.VALUES, self.LABELS,
                             self.VALUES, self.LABELS, gallery_name='gallery',
                             probe_name='probe')
    config = _config(eval__protocols='CME', data__name='CASIA_B_match',
                     data__view='nm.nm')
    results = stage.evaluate_run(resolved_run(config), encoding_set, tmp_path)
    entry = results['entries']['CME/nm.nm']
    assert entry['self_match_skipped'] is True
    assert entry['rank1'] == pytest.approx(0.4)
    # Person 3 has no other sequence: unmatchable, a miss at every rank.
    assert entry['num_unmatchable'] == 1
    assert entry['cmc'][-1] == pytest.approx(0.8)
    # Baselines follow the same rule (they would be 100 % otherwise).
    for baseline in entry['baselines'].values():
      if 'rank1' in baseline:
        assert baseline['rank1'] < 1.0

  def test_same_sequences_encoded_differently_still_skip_themselves(
      self, tmp_path):
    # The sorting pretext encodes a split with its own permutations, so the
    # gallery and probe CAGEs of nm.nm differ although the sequences are equal.
    encoding_set = _line_set('CASIA_B_match', self.VALUES, self.LABELS,
                             [v + 0.001 for v in self.VALUES], self.LABELS,
                             gallery_name='gallery', probe_name='probe')
    config = _config(eval__protocols='CME', data__name='CASIA_B_match',
                     data__view='nm.nm', eval__baselines=False)
    entry = stage.evaluate_run(resolved_run(config), encoding_set,
                                    tmp_path)['entries']['CME/nm.nm']
    assert entry['self_match_skipped'] is True
    assert entry['rank1'] == pytest.approx(0.4)

  def test_different_conditions_plain_nearest_neighbour(self, tmp_path):
    encoding_set = _line_set('CASIA_B_match', self.VALUES, self.LABELS,
                             [0.02, 1.04], [1, 3], gallery_name='gallery',
                             probe_name='probe')
    config = _config(data__name='CASIA_B_match', data__view='cl.nm',
                     eval__baselines=False)
    results = stage.evaluate_run(resolved_run(config), encoding_set, tmp_path)
    # Default protocols 'A,B': no train split, and B runs as CME here.
    assert results['protocols'] == ['A', 'CME']
    assert list(results['entries']) == ['CME/cl.nm']
    entry = results['entries']['CME/cl.nm']
    assert entry['self_match_skipped'] is False
    assert entry['rank1'] == 1.0
    assert entry['label'] == 'CME cl.nm'

  def test_needs_gallery_and_probe(self, tmp_path):
    encoding_set = _line_set('KS20', [0.0], [1], [0.0], [1])
    with pytest.raises(DataError, match='CME'):
      stage.evaluate_run(_run(eval__protocols='CME'), encoding_set,
                              tmp_path)


class TestBaselinesWithoutLayout:

  def test_bone_length_skipped_with_reason(self, tmp_path):
    people = _People(4)
    encoding_set = encodings_lib.combine_splits(
        [('train', people.split([1, 2], 3)),
         ('test', people.split([1, 2], 1))],
        _metadata('mine', bones=None, joint_names=None))
    results = stage.evaluate_run(
        _run(eval__protocols='B'), encoding_set, tmp_path)
    entry = results['entries']['B/test']
    assert 'bones' in entry['baselines']['bone_length']['skipped']
    assert 'rank1' in entry['baselines']['raw_coordinates']
    assert 'bone lengths 1-NN (skipped)' in (
        tmp_path / 'report.md').read_text()


class TestResultFiles:

  REQUIRED = ('schema', 'dataset', 'synthetic', 'seed', 'protocols',
              'selection', 'selection_label', 'headline', 'protocol', 'rank1',
              'nauc', 'map', 'cmc', 'encodings', 'rn', 'retrieval', 'distance',
              'baselines', 'entries', 'notes', 'plots')
  ENTRY_FIELDS = ('protocol', 'probe', 'gallery', 'label', 'num_sequences',
                  'num_excluded', 'excluded_people', 'num_classes',
                  'num_people', 'rank1', 'rank5', 'rank10', 'cmc',
                  'baselines')

  @pytest.mark.slow
  def test_results_json_schema(self, ias_run):
    results, workdir = ias_run
    saved = json.loads((workdir / 'results.json').read_text())
    assert saved['schema'] == results_lib.RESULTS_SCHEMA
    for field in self.REQUIRED:
      assert field in saved, field
    assert saved['dataset'] == 'IAS'
    assert saved['seed'] == 0
    assert saved['synthetic'] is False
    for entry in saved['entries'].values():
      for field in self.ENTRY_FIELDS:
        assert field in entry, field
    assert 'nauc' in saved['entries']['A/A']
    assert 'map' in saved['entries']['B/A']
    rn = saved['rn']
    assert rn['manner'] == 'ap' and rn['num_classes'] == 4
    assert rn['num_train_sequences'] + rn['num_val_sequences'] == 24
    assert len(rn['history']['train_loss']) == 30
    assert saved['rank1'] == pytest.approx(results['rank1'])

  def test_report_markdown(self, ias_run):
    results, workdir = ias_run
    text = (workdir / 'report.md').read_text()
    assert '| probe set | method | Rank-1 (%)' in text
    assert '| IAS-A | CAGEs + RN (ap)' in text
    assert '| IAS-B | bone lengths 1-NN |' in text
    assert 'val (best validation epoch)' in text
    assert 'paper (best test epoch; optimistic)' in text
    assert '| seed | 0 |' in text
    assert '| dataset | IAS |' in text
    assert 'Synthetic data' not in text
    assert f'{100 * results["rank1"]:.1f}' in text

  def test_synthetic_note(self, tmp_path):
    encoding_set = _line_set('demo', [0.0, 1.0], [1, 2], [0.1], [1])
    stage.evaluate_run(_run(eval__protocols='B', eval__baselines=False),
                            encoding_set, tmp_path)
    assert 'Synthetic data' in (tmp_path / 'report.md').read_text()
    assert json.loads((tmp_path / 'results.json').read_text())['synthetic']

  def test_the_synthetic_label_comes_from_the_encodings_not_the_config(
      self, tmp_path):
    # Real encodings scored under a config of the synthetic demo: not synthetic.
    config = _config(eval__protocols='B', eval__baselines=False,
                     data__format='synthetic', data__name='demo')
    real = _line_set('gist_gait_normal', [0.0, 1.0], [1, 2], [0.1], [1])
    real = dataclasses.replace(real, metadata=dataclasses.replace(
        real.metadata, data_source='/data/gist_gait_normal.npz'))
    results = stage.evaluate_run(resolved_run(config), real, tmp_path / 'real')
    assert not results['synthetic'] and results['dataset'] == 'gist_gait_normal'
    assert 'Synthetic data' not in (tmp_path / 'real' / 'report.md').read_text()
    # Walkers of the generator, whatever the dataset is called.
    walkers = dataclasses.replace(real, metadata=dataclasses.replace(
        real.metadata, data_source='synthetic(seed=0)'))
    assert stage.evaluate_run(_run(eval__protocols='B',
                                      eval__baselines=False),
                              walkers, tmp_path / 'walkers')['synthetic']

  def test_plots_written_with_matplotlib(self, ias_run):
    pytest.importorskip('matplotlib')
    results, workdir = ias_run
    expected = {'cmc_A_A.png', 'roc_A_A.png', 'confusion_A_A.png',
                'cmc_A_B.png', 'roc_A_B.png', 'confusion_A_B.png',
                'cmc_B_A.png', 'cmc_B_B.png', 'rn_accuracy.png'}
    assert set(results['plots']) == expected
    for name in expected:
      assert (workdir / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert '![cmc_A_A.png](cmc_A_A.png)' in (workdir / 'report.md').read_text()

  def test_plots_skipped_cleanly_without_matplotlib(self, tmp_path,
                                                    monkeypatch):
    for name in [m for m in sys.modules if m.startswith('matplotlib')] + [
        'matplotlib']:
      monkeypatch.setitem(sys.modules, name, None)
    encoding_set = _line_set('KS20', [0.0, 1.0], [1, 2], [0.1], [1])
    results = stage.evaluate_run(
        _run(eval__protocols='B', eval__baselines=False), encoding_set,
        tmp_path)
    assert results['plots'] == []
    assert any('matplotlib is not installed' in n for n in results['notes'])
    assert not list(tmp_path.glob('*.png'))
    assert (tmp_path / 'results.json').exists()
    assert 'matplotlib is not installed' in (tmp_path / 'report.md').read_text()


class TestAggregation:

  @pytest.mark.slow
  def test_mean_and_std_over_seeds(self, tmp_path):
    people = _People(5)
    encoding_set = encodings_lib.combine_splits(
        [('train', people.split([1, 2, 3], 4)),
         ('test', people.split([1, 2, 3], 2))], _metadata('KS20'))
    per_seed = []
    for seed in (0, 1, 2):
      config = _config(rn__epochs=3, rn__selection='fixed')
      config.seed = seed
      per_seed.append(stage.evaluate_run(resolved_run(config), encoding_set,
                                              tmp_path / f'seed_{seed}'))
    aggregate = stage.aggregate_seed_results(per_seed, tmp_path)
    values = [r['entries']['A/test']['rank1'] for r in per_seed]
    stat = aggregate['entries']['A/test']['rank1']
    assert stat['values'] == pytest.approx(values)
    assert stat['mean'] == pytest.approx(np.mean(values))
    assert stat['std'] == pytest.approx(np.std(values, ddof=1))
    assert aggregate['seeds'] == [0, 1, 2]
    assert aggregate['rank1'] == stat
    cmc = aggregate['entries']['A/test']['cmc']
    assert cmc['mean'] == pytest.approx(
        np.mean([r['entries']['A/test']['cmc'] for r in per_seed], axis=0))
    # Baselines do not depend on the seed: std 0.
    assert aggregate['entries']['B/test']['baselines']['raw_coordinates'][
        'rank1']['std'] == 0.0
    saved = json.loads((tmp_path / 'results.json').read_text())
    assert saved['schema'] == results_lib.AGGREGATE_SCHEMA
    assert saved['entries']['A/test']['nauc']['values'] == pytest.approx(
        [r['entries']['A/test']['nauc'] for r in per_seed])
    text = (tmp_path / 'report.md').read_text()
    assert '| seeds | 0, 1, 2 |' in text
    assert (f'{100 * stat["mean"]:.1f} ± {100 * stat["std"]:.1f}') in text
    assert all(math.isfinite(v) for v in stat['values'])

  def test_confusion_matrices_summed_and_seed_plot_notes_dropped(self):
    def seed_results(seed, counts, classes=(3, 5)):
      entry = {'protocol': 'A', 'probe': 'test', 'gallery': 'train',
               'label': 'test', 'rank1': 0.5, 'cmc': [0.5, 1.0],
               'confusion_matrix': {'classes': list(classes),
                                    'counts': counts}}
      return {'dataset': 'KS20', 'seed': seed, 'protocols': ['A'],
              'selection': 'val', 'selection_label': 'val', 'headline': None,
              'protocol': 'A', 'encodings': {'encoder_seed': seed},
              'retrieval': {}, 'distance': 'euclidean', 'baselines': {},
              'entries': {'A/test': entry},
              'notes': ['Plot cmc_A_test.png not written: flat.', 'kept']}

    aggregate = results_lib.aggregate([seed_results(0, [[1, 1], [0, 2]]),
                                       seed_results(1, [[2, 0], [1, 1]])])
    assert aggregate['entries']['A/test']['confusion_matrix'] == {
        'classes': [3, 5], 'counts': [[3, 1], [1, 3]]}
    assert aggregate['notes'] == ['kept']
    other_classes = results_lib.aggregate([
        seed_results(0, [[1, 1], [0, 2]]),
        seed_results(1, [[2, 0], [1, 1]], classes=(3, 6))])
    assert 'confusion_matrix' not in other_classes['entries']['A/test']

  def test_mismatched_seeds_are_rejected(self, tmp_path):
    encoding_set = _line_set('KS20', [0.0, 1.0], [1, 2], [0.1], [1])
    first = stage.evaluate_run(
        _run(eval__protocols='B', eval__baselines=False), encoding_set,
        tmp_path / 'a')
    second = dict(first, seed=1, dataset='KGBD')
    with pytest.raises(DataError, match='dataset'):
      stage.aggregate_seed_results([first, second], tmp_path)


class TestNothingSilent:

  def test_a_single_training_person_is_refused(self, tmp_path):
    people = _People()
    encoding_set = encodings_lib.combine_splits(
        [('train', people.split([1], 6)), ('test', people.split([1], 2))],
        _metadata('ONE'))
    with pytest.raises(DataError, match='holds 1 person'):
      stage.evaluate_run(_run(), encoding_set, tmp_path)

  def test_no_test_person_in_training_is_an_error_when_nothing_else_scores(
      self, tmp_path):
    people = _People()
    encoding_set = encodings_lib.combine_splits(
        [('train', people.split([1, 2], 6)), ('test', people.split([3, 4], 2))],
        _metadata('DISJOINT'))
    with pytest.raises(DataError, match='Nothing could be evaluated.*not among'):
      stage.evaluate_run(_run(eval__protocols='A'), encoding_set, tmp_path)

  def test_a_skipped_protocol_is_a_warning_in_results_and_summary(self, tmp_path):
    people = _People()
    encoding_set = encodings_lib.combine_splits(
        [('train', people.split([1, 2, 3], 6)),
         ('gallery', people.split([4, 5], 2)), ('probe', people.split([4, 5], 2))],
        _metadata('GP'))
    results = stage.evaluate_run(_run(eval__baselines=False), encoding_set,
                                 tmp_path)
    assert results['entries']['B/probe']['rank1'] is not None
    assert any('not among' in w for w in results['warnings'])
    assert any(line.startswith('warning: ')
               for line in report.summary_lines(results))
