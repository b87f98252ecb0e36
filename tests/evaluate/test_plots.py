"""Tests of the plots: what each shows (titles, legends, ranges read from the
figure objects, never pixels), which are written or left out, and the
training log they read."""

import errno
import json
import os

import numpy as np
import pytest

from sge_jax.errors import WorkdirError
from sge_jax.evaluate import plot_style, plots, training_plot
from sge_jax.evaluate import report
from sge_jax.evaluate import results as results_lib

matplotlib = pytest.importorskip('matplotlib')

PNG = b'\x89PNG\r\n\x1a\n'


def _a_entry(**fields):
  """A protocol-A window entry: 3 classes, CAGEs 84.6 % Rank-1."""
  entry = {
      'protocol': 'A', 'probe': 'test', 'gallery': 'train', 'label': 'test',
      'rank1': 0.846, 'nauc': 0.97, 'cmc': [0.846, 0.9, 1.0],
      'baselines': {
          'raw_coordinates': {'rank1': 0.59, 'cmc': [0.59, 0.8, 1.0]},
          'gait_descriptor': {'rank1': 0.846, 'cmc': [0.846, 0.9, 1.0]},
          'bone_length': {'skipped': 'no bones'}},
      'selection': 'val', 'selected_epoch': 7,
      'by_selection': {
          'val': {'label': 'val (best validation epoch)', 'epoch': 7},
          'fixed': {'label': 'fixed (last epoch)', 'epoch': 12},
          'paper': {'label': 'paper (best test epoch; optimistic)',
                    'epoch': 4}},
      'confusion_matrix': {'classes': [3, 5, 9],
                           'counts': [[2, 0, 0], [1, 1, 0], [0, 0, 2]]},
  }
  entry.update(fields)
  return entry


def _walk_entry(protocol, aggregation, gallery_level=None, cmc=(0.5, 1.0)):
  entry = {'protocol': protocol, 'probe': 'test', 'gallery': 'train',
           'label': 'test walks', 'level': 'walk', 'aggregation': aggregation,
           'rank1': cmc[0], 'cmc': list(cmc)}
  if gallery_level:
    entry['gallery_level'] = gallery_level
  return entry


def _results(entries, **fields):
  results = {'dataset': 'KGBD', 'selection': 'val', 'rn': None,
             'walks': {'aggregations': ['vote', 'mean']}, 'entries': entries,
             'notes': []}
  results.update(fields)
  return results


def _legend(axes):
  return [text.get_text() for text in axes.get_legend().get_texts()]


class TestTitles:

  def test_title_names_dataset_protocol_probe_gallery_level_aggregation(self):
    results = _results({})
    assert plot_style.plot_title(results, _a_entry(), 'CMC') == (
        'KGBD: CMC, protocol A, test -> train, windows')
    assert plot_style.plot_title(results, _walk_entry('A', 'mean'), 'CMC') == (
        'KGBD: CMC, protocol A, test -> train, walks (mean)')
    assert plot_style.plot_title(results, _walk_entry('B', 'vote', 'walk'),
                            'CMC') == ('KGBD: CMC, protocol B, test -> train, '
                                       'walks (vote) vs gallery walks')
    cme = {'protocol': 'CME', 'conditions': 'nm.bg', 'probe': 'probe',
           'gallery': 'gallery'}
    assert plot_style.plot_title(results, cme, 'micro-averaged ROC') == (
        'KGBD: micro-averaged ROC, CME nm.bg, probe -> gallery, windows')

  def test_configured_aggregation_per_protocol(self):
    assert report.configured_aggregation(_results({}), 'B') == 'vote'
    per_protocol = _results({}, walks={'aggregations': {'A': 'mean',
                                                        'B': ['vote', 'mean']}})
    assert report.configured_aggregation(per_protocol, 'A') == 'mean'
    assert report.configured_aggregation(per_protocol, 'B') == 'vote'
    assert report.configured_aggregation(_results({}, walks=None), 'A') is None


class TestCMC:

  def test_legend_styles_and_range(self):
    figure = plots.cmc_figure(_results({}), _a_entry())
    axes = figure.axes[0]
    assert axes.get_title().replace('\n', ' ') == (
        'KGBD: CMC, protocol A, test -> train, windows')
    assert _legend(axes) == ['CAGEs (Rank-1 84.6%)',
                             'raw coordinates (Rank-1 59.0%)',
                             'gait descriptor (D-13 style) (Rank-1 84.6%)']
    # CAGEs and the gait descriptor lie on each other: styles tell them apart.
    styles = [(line.get_linestyle(), line.get_marker())
              for line in axes.get_lines()]
    assert len(set(styles)) == len(styles) == 3
    bottom, top = axes.get_ylim()
    assert 55 < bottom < 59 and 100 < top < 102

  def test_aggregate_legend_has_mean_and_std_and_band_sets_the_range(self):
    entry = _a_entry(rank1={'mean': 0.8, 'std': 0.1, 'values': [0.7, 0.9]},
                     cmc={'mean': [0.8, 1.0], 'std': [0.1, 0.0]}, baselines={})
    figure = plots.cmc_figure(_results({}, num_seeds=2), entry)
    axes = figure.axes[0]
    assert _legend(axes) == ['CAGEs (Rank-1 80.0 ± 10.0%)']
    assert 'mean ± std over 2 seeds' in axes.get_title().replace('\n', ' ')
    assert axes.get_ylim()[0] < 70

  def test_y_range(self):
    assert plots.cmc_y_range([(np.array([1.0, 1.0]), None)])[0] == 99.0
    bottom, top = plots.cmc_y_range([(np.array([0.0, 0.5]), None)])
    assert bottom == 0.0 and 100 < top < 103

  def test_flat_cmcs_are_not_plotted_and_noted(self, tmp_path):
    flat = _walk_entry('B', 'vote', 'window', cmc=(0.9, 0.9, 0.9))
    flat['baselines'] = {'raw_coordinates': {'rank1': 1.0,
                                             'cmc': [1.0, 1.0, 1.0]}}
    results = _results({'B/test/walks-vote-vs-windows': flat,
                        'B/test/walks-vote': _walk_entry('B', 'vote', 'walk')})
    outcome = plots.write_plots(results, tmp_path)
    assert outcome.files == ['cmc_B_test_walks-vote.png']
    assert not (tmp_path / 'cmc_B_test_walks-vote-vs-windows.png').exists()
    [note] = outcome.notes
    assert note.startswith('Plot cmc_B_test_walks-vote-vs-windows.png not '
                           'written') and 'flat' in note
    assert plots.is_plot_note(note)


class TestWhichEntries:

  def test_walk_entries_of_each_protocols_configured_aggregation(self,
                                                                 tmp_path):
    entries = {f'{p}/test/walks-{a}': _walk_entry(p, a, 'walk' if p == 'B'
                                                  else None)
               for p in ('A', 'B') for a in ('vote', 'mean')}
    results = _results(entries, walks={'aggregations': {'A': 'mean',
                                                        'B': 'vote'}})
    outcome = plots.write_plots(results, tmp_path)
    assert outcome.files == ['cmc_A_test_walks-mean.png',
                             'cmc_B_test_walks-vote.png']


class TestConfusion:

  def test_written_for_protocol_a_with_counts_in_cells(self, tmp_path):
    entry = _a_entry()
    figure = plots.confusion_figure(_results({}), entry)
    axes = figure.axes[0]
    assert axes.get_title().replace('\n', ' ') == (
        'KGBD: confusion matrix, protocol A, test -> train, windows, val rule')
    assert sorted(text.get_text() for text in axes.texts) == ['1', '1', '2',
                                                              '2']
    assert [t.get_text() for t in axes.get_xticklabels()] == ['3', '5', '9']
    assert axes.get_xlabel() == 'predicted person'
    outcome = plots.write_plots(_results({'A/test': entry}), tmp_path)
    assert 'confusion_A_test.png' in outcome.files
    assert (tmp_path / 'confusion_A_test.png').read_bytes()[:8] == PNG

  def test_many_classes_are_an_image_without_numbers(self):
    size = 60
    counts = np.eye(size, dtype=int).tolist()
    entry = _a_entry(confusion_matrix={'classes': list(range(100, 100 + size)),
                                       'counts': counts})
    axes = plots.confusion_figure(_results({}, num_seeds=3), entry).axes[0]
    assert not axes.texts
    assert len(axes.get_xticklabels()) <= 12
    assert 'summed over 3 seeds' in axes.get_title().replace('\n', ' ')


class TestRNAccuracy:

  def _history_results(self):
    history = {'train_loss': [1.0] * 12, 'val_accuracy': [0.5] * 12,
               'test_accuracy': {'A': [0.4] * 12, 'B': [0.3] * 12}}
    paper_b = {'label': 'paper (best test epoch; optimistic)', 'epoch': 11}
    entries = {'A/A': _a_entry(probe='A'),
               'A/B': _a_entry(probe='B', by_selection={
                   **_a_entry()['by_selection'], 'paper': paper_b}),
               'A/A/walks-vote': _walk_entry('A', 'vote')}
    return _results(entries, rn={'history': history})

  def test_each_rules_epoch_is_marked_with_a_legend_entry(self):
    axes = plots.rn_accuracy_figure(self._history_results()).axes[0]
    assert _legend(axes) == [
        'validation', 'test split A', 'test split B',
        'val (best validation epoch): epoch 7, reported',
        'fixed (last epoch): epoch 12',
        'paper (best test epoch; optimistic): epochs 4 (A), 11 (B)']
    vertical = sorted(line.get_xdata()[0] for line in axes.get_lines()
                      if len(set(line.get_xdata())) == 1
                      and len(line.get_xdata()) == 2)
    assert vertical == [4, 7, 11, 12]

  def test_no_history_no_plot(self):
    assert plots.rn_accuracy_figure(_results({})) is None


TRAINING_LOG = [
    {'stage': 'train', 'step': 10, 'epoch': 1,
     'loss/total': {'m/x': 1000.0, 'm/y': 900.0},
     'loss/reconstruction': {'m/x': 300.0, 'm/y': 200.0}},
    {'stage': 'train', 'step': 10, 'epoch': 1,
     'validation/reconstruction': {'m/x': 100.0, 'm/y': 50.0},
     'active': {'m/x': True, 'm/y': True}},
    {'stage': 'train', 'step': 20, 'warning': 'diverging'},
    {'stage': 'encode', 'step': 30, 'loss/total': {'m/x': 1.0}},
    {'stage': 'train', 'step': 20, 'epoch': 2,
     'loss/total': {'m/x': 'nan', 'm/y': 800.0},
     'loss/reconstruction': {'m/x': 'inf', 'm/y': 2.0}},
    {'stage': 'train', 'step': 20, 'epoch': 2,
     'validation/reconstruction': {'m/x': 90.0, 'm/y': 3.0},
     'active': {'m/x': True, 'm/y': False}},
]


def _log_lines(records=TRAINING_LOG):
  return [json.dumps(record) for record in records] + ['{"stage": "tr']


class TestTrainingLoss:

  def test_parse(self):
    curves = training_plot.parse_training_log(_log_lines())
    assert curves.models == ['m/x', 'm/y']
    np.testing.assert_array_equal(curves.steps, [10, 20])
    np.testing.assert_array_equal(curves.total['m/x'], [1000.0, np.nan])
    np.testing.assert_array_equal(curves.reconstruction['m/x'], [300, np.inf])
    np.testing.assert_array_equal(curves.validation_steps, [10, 20])
    np.testing.assert_array_equal(curves.validation['m/y'], [50.0, 3.0])
    assert curves.stopped == {'m/y': 20}
    assert training_plot.parse_training_log(['', 'not json', '[1]', '{}']) is None

  def test_figure(self):
    curves = training_plot.parse_training_log(_log_lines())
    figure = training_plot.training_loss_figure(_results({}), curves)
    total, reconstruction = figure.axes
    assert _legend(total) == ['m/x', 'm/y']
    assert _legend(reconstruction) == ['training batches, per logging step',
                                       'validation, per epoch',
                                       'stopped early']
    assert total.get_yscale() == 'linear'       # 800..1000
    assert reconstruction.get_yscale() == 'log'  # 2..300
    assert figure.texts[0].get_text() == (
        'KGBD: encoder training, one colour per model')

  def test_written_from_the_runs_log_also_for_a_reevaluation(self, tmp_path):
    (tmp_path / 'metrics.jsonl').write_text('\n'.join(_log_lines()) + '\n')
    outcome = plots.write_plots(_results({}), tmp_path)
    assert outcome.files == ['training_loss.png']
    assert (tmp_path / 'training_loss.png').read_bytes()[:8] == PNG
    evaluation = tmp_path / 'evaluations' / 'rn.selection-fixed'
    evaluation.mkdir(parents=True)
    assert training_plot.training_log_path(evaluation) == tmp_path / 'metrics.jsonl'
    assert plots.write_plots(_results({}), evaluation).files == [
        'training_loss.png']

  def test_skipped_silently_without_a_log_or_training_records(self, tmp_path):
    assert plots.write_plots(_results({}), tmp_path) == plots.PlotOutcome()
    (tmp_path / 'metrics.jsonl').write_text('{"stage": "encode", "step": 1}\n')
    assert plots.write_plots(_results({}), tmp_path) == plots.PlotOutcome()

  def test_a_fifo_is_not_opened(self, tmp_path):
    os.mkfifo(tmp_path / 'metrics.jsonl')
    outcome = plots.write_plots(_results({}), tmp_path)
    assert outcome.files == []
    [note] = outcome.notes
    assert 'FIFO' in note and note.startswith('Plot training_loss.png')

  def test_a_huge_log_is_not_read(self, tmp_path, monkeypatch):
    monkeypatch.setattr(training_plot, 'MAX_METRICS_BYTES', 100)
    (tmp_path / 'metrics.jsonl').write_text('\n'.join(_log_lines()) + '\n')
    [note] = plots.write_plots(_results({}), tmp_path).notes
    assert 'MiB' in note


class TestFailures:

  def test_a_plot_that_fails_to_draw_is_a_note_not_a_lost_run(
      self, tmp_path, monkeypatch):
    def broken(*args):
      raise ValueError('bad value')
    monkeypatch.setattr(plots, 'cmc_figure', broken)
    monkeypatch.setattr(report, 'render_markdown',
                        lambda results: '\n'.join(results['notes']))
    results = _results({'A/test': _a_entry()})
    results_lib.write_run_outputs(results, tmp_path)
    assert results['plots'] == ['confusion_A_test.png']
    assert any(note.startswith('Plot cmc_A_test.png not written') and
               'bad value' in note for note in results['notes'])
    saved = json.loads((tmp_path / 'results.json').read_text())
    assert saved['notes'] == results['notes']
    assert 'cmc_A_test.png not written' in (tmp_path / 'report.md').read_text()

  def test_a_full_disk_is_the_one_line_workdir_error(self, tmp_path,
                                                     monkeypatch):
    def full(file, *args, **kwargs):
      raise OSError(errno.ENOSPC, 'No space left on device')
    from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
    monkeypatch.setattr(Figure, 'savefig', full)
    with pytest.raises(WorkdirError, match='free some space'):
      plots.write_plots(_results({'A/test': _a_entry()}), tmp_path)
    assert not list(tmp_path.iterdir())
