"""PNG plots of a results dict (one run or the multi-seed aggregate), and of the
run's training log.

Everything drawn comes from the results dict, as written to results.json, and
from the run's ``metrics.jsonl``; nothing is recomputed (the ROC curves, which
results.json does not keep, are handed over by the evaluate stage). Files,
next to results.json:

  training_loss.png    encoder training, one colour per model: the total loss
                       per logging step (left) and the reconstruction loss
                       (right: training batches per logging step as lines,
                       validation per epoch as markers, an x where a model
                       stopped early); from the run's metrics.jsonl (a
                       re-evaluation in <run>/evaluations/<name>/ reads the
                       run's); not written when there is none
  cmc_<key>.png        CMC of one entry, CAGEs and every baseline, Rank-1 in
                       the legend; not written when every curve is flat (a note
                       in results.json says so)
  roc_<key>.png        micro-averaged ROC of one entry, nAUC in the legend
                       (one run only: the aggregate keeps no curves)
  confusion_<key>.png  confusion matrix of a protocol-A window entry under the
                       reported selection rule (share of each true person's
                       sequences; counts written in the cells when there are few
                       classes)
  rn_accuracy.png      RN validation and test accuracy per epoch, with the epoch
                       each selection rule chose

Titles name the dataset, the protocol, probe -> gallery, the level and, for
walk entries, the aggregation (``plot_style.plot_title``). Walk-level entries
are plotted for the configured aggregation of their protocol only
(``report.configured_aggregation``); the other's numbers are in results.json
and report.md. matplotlib is optional: without it the plots are skipped with a
note. What every figure shares is in ``plot_style``; the training log and its
figure in ``training_plot``.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
from typing import Any, Optional, Sequence

import numpy as np

from sge_jax.errors import WorkdirError
from sge_jax.evaluate.plot_style import (cmc_label, file_stem, load_matplotlib,
                                         markevery, matplotlib_ticker,
                                         method_style, new_figure, plot_title,
                                         save_figure, seeds_phrase, set_title)
from sge_jax.evaluate.report import (baseline_title, configured_aggregation,
                                     is_stat, is_walk_entry)
from sge_jax.evaluate.training_plot import (TRAINING_LOSS_FILE,
                                            read_training_log,
                                            training_log_path,
                                            training_loss_figure)

NO_MATPLOTLIB_NOTE = ('matplotlib is not installed: plots skipped '
                      '(pip install matplotlib to get them).')
RN_ACCURACY_FILE = 'rn_accuracy.png'
# Every note about a plot starts so (the multi-seed aggregate drops the seeds'
# ones: they describe the seeds' plots).
PLOT_NOTE_PREFIX = 'Plot '
# Above this many classes the confusion matrix has no numbers in its cells,
# and above _MAX_CLASS_TICKS not every person id on its axes.
_MAX_ANNOTATED_CLASSES = 20
_MAX_CLASS_TICKS = 40

_log = logging.getLogger(__name__)


# ---------------------------------------------------------------- CMC


def _cmc_curves(entry: dict[str, Any]) -> list[tuple[str, dict, np.ndarray,
                                                     Optional[np.ndarray]]]:
  """(method, its values, mean curve [K], std curve [K] or None), CAGEs first,
  for every method with a CMC."""
  def curve(values):
    if is_stat(values):
      return (np.asarray(values['mean'], float),
              np.asarray(values['std'], float))
    return np.asarray(values, float), None

  curves = [('CAGEs', entry, *curve(entry['cmc']))]
  for name, baseline in entry.get('baselines', {}).items():
    if 'cmc' in baseline:
      curves.append((baseline_title(name), baseline, *curve(baseline['cmc'])))
  return curves


def is_flat(curve: np.ndarray) -> bool:
  """Whether a CMC [K] holds one value at every rank (a NaN is not flat)."""
  return bool(curve.size and np.all(curve == curve[0]))


def cmc_y_range(curves: Sequence[tuple[np.ndarray, Optional[np.ndarray]]]
                ) -> tuple[float, float]:
  """(bottom, top) of a CMC plot in %: just below the lowest value plotted
  (the ± std band included), to 100 and a hair above, so that a curve at 100
  is not hidden by the frame."""
  lows = [100 * (mean - (std if std is not None else 0.0))
          for mean, std in curves]
  finite = np.concatenate([low[np.isfinite(low)] for low in lows] or [[]])
  lowest = float(np.clip(finite.min(), 0, 100)) if finite.size else 0.0
  margin = max(1.0, 0.05 * (100 - lowest))
  return max(0.0, lowest - margin), 100 + 0.4 * margin


def cmc_figure(results: dict[str, Any], entry: dict[str, Any]):
  """The CMC figure of one entry: one distinct line style and marker per
  method, Rank-1 in the legend, ± std bands in the aggregate."""
  figure = new_figure((6.4, 4.4))
  axes = figure.add_subplot()
  curves = _cmc_curves(entry)
  for index, (method, values, mean, std) in enumerate(curves):
    ranks = np.arange(1, mean.size + 1)
    style = method_style(index)
    axes.plot(ranks, 100 * mean, label=cmc_label(method, values),
              markevery=markevery(mean.size, index), markersize=5,
              alpha=0.9, **style)
    if std is not None:
      axes.fill_between(ranks, 100 * (mean - std), 100 * (mean + std),
                        color=style['color'], alpha=0.15)
  axes.set_xlabel('rank k')
  axes.xaxis.set_major_locator(matplotlib_ticker().MaxNLocator(integer=True))
  axes.set_ylabel('recognition rate (%)')
  axes.set_ylim(*cmc_y_range([(mean, std) for _, _, mean, std in curves]))
  set_title(axes, plot_title(results, entry, 'CMC')
             + seeds_phrase(results, 'mean ± std'))
  axes.grid(alpha=0.3)
  axes.legend(loc='lower right', fontsize='small')
  return figure


def flat_cmc_note(key: str, entry: dict[str, Any]) -> str:
  why = ('each gallery person has many windows, so the first ranks all hold '
         "the same person's windows; "
         if entry.get('gallery_level') == 'window' else '')
  return (f'{PLOT_NOTE_PREFIX}cmc_{file_stem(key)}.png not written: every '
          f'method\'s CMC of {key} is flat ({why}each keeps its Rank-1 at every '
          'rank shown), so the Rank-1 values in report.md say all it would '
          'show.')


# ---------------------------------------------------------------- ROC


def roc_figure(results: dict[str, Any], entry: dict[str, Any],
               rocs: dict[str, tuple]):
  """The micro-averaged ROC figure of one entry; nAUC in the legend (the
  entry's value, else the area under the curve given)."""
  figure = new_figure((5.6, 5))
  axes = figure.add_subplot()
  for index, (name, (fpr, tpr)) in enumerate(rocs.items()):
    values = (entry if name == 'CAGEs'
              else entry.get('baselines', {}).get(name, {}))
    area = values.get('nauc')
    if not isinstance(area, (int, float)):
      area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    fpr, tpr = np.asarray(fpr, float), np.asarray(tpr, float)
    axes.plot(fpr, tpr, label=f'{baseline_title(name)} (nAUC '
              f'{100 * area:.1f}%)', markevery=markevery(fpr.size, index),
              markersize=4, alpha=0.9, **method_style(index))
  axes.plot([0, 1], [0, 1], color='grey', linestyle='--', linewidth=0.8)
  axes.set_xlabel('false positive rate')
  axes.set_ylabel('true positive rate')
  set_title(axes, plot_title(results, entry, 'micro-averaged ROC'), 66)
  axes.grid(alpha=0.3)
  axes.legend(loc='lower right', fontsize='small')
  return figure


# ---------------------------------------------------------------- confusion


def confusion_figure(results: dict[str, Any], entry: dict[str, Any]):
  """The confusion matrix of a protocol-A entry (``entry['confusion_matrix']``):
  colour = share of the true person's scored sequences, counts in the cells
  for up to 20 classes; rows are true people, columns predicted ones."""
  record = entry['confusion_matrix']
  counts = np.asarray(record['counts'], float)
  classes = [str(c) for c in record['classes']]
  size = len(classes)
  totals = counts.sum(axis=1, keepdims=True)
  shares = np.divide(counts, totals, out=np.zeros_like(counts),
                     where=totals > 0)
  side = float(np.clip(3 + 0.22 * size, 5, 9))
  figure = new_figure((side + 1.2, side))
  axes = figure.add_subplot()
  image = axes.imshow(shares, cmap='Blues', vmin=0, vmax=1,
                      interpolation='nearest')
  colorbar = figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
  colorbar.set_label("share of the true person's sequences")
  if size <= _MAX_ANNOTATED_CLASSES:
    for row, column in zip(*np.nonzero(counts)):
      axes.text(column, row, f'{counts[row, column]:.0f}', ha='center',
                va='center', fontsize='x-small',
                color='white' if shares[row, column] > 0.5 else 'black')
  positions = (np.arange(size) if size <= _MAX_CLASS_TICKS
               else np.unique(np.linspace(0, size - 1, 12).round().astype(int)))
  for axis in (axes.xaxis, axes.yaxis):
    axis.set_major_locator(matplotlib_ticker().FixedLocator(positions))
    axis.set_major_formatter(matplotlib_ticker().FixedFormatter(
        [classes[p] for p in positions]))
  axes.tick_params(axis='x', labelrotation=90, labelsize='x-small')
  axes.tick_params(axis='y', labelsize='x-small')
  axes.set_xlabel('predicted person')
  axes.set_ylabel('true person')
  rule = entry.get('selection')
  set_title(axes, plot_title(results, entry, 'confusion matrix')
             + (f', {rule} rule' if rule else '')
             + seeds_phrase(results, 'summed'), 56)
  return figure


# ---------------------------------------------------------------- RN accuracy


_RULE_STYLES = {'val': ('--', 'black', 'o'), 'fixed': (':', 'dimgrey', 's'),
                'paper': ('-.', 'tab:red', '^')}


def selection_marks(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
  """Rule -> {'label', 'epochs': {test split: epoch}} from the protocol-A
  window entries' ``by_selection`` (the paper rule picks per split)."""
  marks: dict[str, dict[str, Any]] = {}
  for entry in results['entries'].values():
    if entry['protocol'] != 'A' or is_walk_entry(entry):
      continue
    for rule, chosen in (entry.get('by_selection') or {}).items():
      if isinstance(chosen.get('epoch'), int):
        mark = marks.setdefault(rule, {'label': chosen.get('label', rule),
                                       'epochs': {}})
        mark['epochs'][entry['probe']] = chosen['epoch']
  return marks


def rule_legend(results: dict[str, Any], rule: str,
                mark: dict[str, Any]) -> str:
  """'val (best validation epoch): epoch 12, reported' or, when the splits
  differ, 'paper (...): epochs 8 (A), 11 (B)'."""
  epochs = mark['epochs']
  if len(set(epochs.values())) == 1:
    where = f'epoch {next(iter(epochs.values()))}'
  else:
    where = 'epochs ' + ', '.join(f'{epoch} ({split})'
                                  for split, epoch in epochs.items())
  reported = ', reported' if rule == results.get('selection') else ''
  return f'{mark["label"]}: {where}{reported}'


def rn_accuracy_figure(results: dict[str, Any]):
  """RN accuracy per epoch (validation, each test split) with the epoch each
  selection rule chose: a vertical line per rule and a marker on each test
  curve at its split's epoch. None without a history to plot."""
  rn = results.get('rn')
  history = (rn or {}).get('history')
  if not history or (history.get('val_accuracy') is None
                     and not history.get('test_accuracy')):
    return None
  figure = new_figure((7, 4.4))
  axes = figure.add_subplot()
  epochs = np.arange(1, len(history['train_loss']) + 1)
  if history.get('val_accuracy') is not None:
    axes.plot(epochs, 100 * np.asarray(history['val_accuracy'], float),
              label='validation', color='black', linewidth=1.2)
  tests = {}
  for index, (split, curve) in enumerate(history['test_accuracy'].items()):
    tests[split] = 100 * np.asarray(curve, float)
    axes.plot(epochs[:tests[split].size], tests[split], alpha=0.8,
              linewidth=1.2, color=f'C{index % 10}',
              label=split if split == 'test' else f'test split {split}')
  for rule, mark in selection_marks(results).items():
    linestyle, color, marker = _RULE_STYLES.get(rule, (':', 'grey', 'x'))
    for number, epoch in enumerate(sorted(set(mark['epochs'].values()))):
      axes.axvline(epoch, color=color, linestyle=linestyle, linewidth=1.0,
                   label=rule_legend(results, rule, mark) if number == 0
                   else None)
    for split, epoch in mark['epochs'].items():
      if split in tests and 1 <= epoch <= tests[split].size:
        axes.plot([epoch], [tests[split][epoch - 1]], linestyle='none',
                  marker=marker, color=color, markersize=6,
                  markerfacecolor='none')
  axes.set_xlabel('RN epoch')
  axes.xaxis.set_major_locator(matplotlib_ticker().MaxNLocator(integer=True))
  axes.set_ylabel('sequence accuracy (%)')
  set_title(axes, f'{results["dataset"]}: RN accuracy per epoch (protocol A), '
             'with the epoch each selection rule chose', 66)
  axes.grid(alpha=0.3)
  axes.legend(fontsize='small', loc='lower right')
  return figure


# ---------------------------------------------------------------- all


@dataclasses.dataclass
class PlotOutcome:
  """What ``write_plots`` did: the PNG file names written, in order, and notes
  on plots not written (for results.json)."""
  files: list[str] = dataclasses.field(default_factory=list)
  notes: list[str] = dataclasses.field(default_factory=list)


def is_plot_note(note: str) -> bool:
  return note.startswith(PLOT_NOTE_PREFIX)


def _plotted(results: dict[str, Any], entry: dict[str, Any]) -> bool:
  """Window entries, and walk entries of their protocol's configured
  aggregation."""
  return (not is_walk_entry(entry) or entry.get('aggregation')
          == configured_aggregation(results, entry['protocol']))


def write_plots(results: dict[str, Any], workdir: pathlib.Path,
                rocs: Optional[dict[str, dict[str, tuple]]] = None
                ) -> Optional[PlotOutcome]:
  """The module's plots of ``results`` (and of the run's training log).

  A plot that fails to draw (a value matplotlib refuses) is left out with a
  note, so the results files are still written; a failed write of a PNG
  (disk full) is a WorkdirError, as for every file.

  Args:
    results: a results dict (schema in ``sge_jax.evaluate.results``).
    workdir: where the PNGs go (the results' folder).
    rocs: entry key -> {method: (fpr [P], tpr [P])}, CAGEs first (one run).

  Returns:
    The files written and the notes, or None when matplotlib is not installed.
  """
  if not load_matplotlib():
    _log.info('[eval] %s', NO_MATPLOTLIB_NOTE)
    return None
  import matplotlib  # pylint: disable=g-import-not-at-top
  outcome = PlotOutcome()

  def draw(name: str, make) -> None:
    try:
      # Names from the data (dataset, splits, models) are shown as written:
      # a '$' in them does not start matplotlib's math mode.
      with matplotlib.rc_context({'text.parse_math': False}):
        figure = make()
        if figure is None:
          return
        save_figure(figure, workdir / name)
    except WorkdirError:
      raise
    except Exception as error:  # pylint: disable=broad-except
      note = (f'{PLOT_NOTE_PREFIX}{name} not written: drawing it failed '
              f'({type(error).__name__}: {error}).')
      _log.warning('[eval] %s', note)
      outcome.notes.append(note)
      return
    outcome.files.append(name)

  def training_loss():
    log_path = training_log_path(workdir)
    if log_path is None:
      return None
    curves, problem = read_training_log(log_path)
    if problem:
      outcome.notes.append(f'{PLOT_NOTE_PREFIX}{TRAINING_LOSS_FILE} not '
                           f'written: {problem}.')
    return None if curves is None else training_loss_figure(results, curves)

  draw(TRAINING_LOSS_FILE, training_loss)
  for key, entry in results['entries'].items():
    if 'skipped' in entry or not _plotted(results, entry):
      continue
    stem = file_stem(key)
    if 'cmc' in entry:
      if all(is_flat(mean) for _, _, mean, _ in _cmc_curves(entry)):
        outcome.notes.append(flat_cmc_note(key, entry))
      else:
        draw(f'cmc_{stem}.png', lambda: cmc_figure(results, entry))
    if rocs and rocs.get(key):
      draw(f'roc_{stem}.png', lambda: roc_figure(results, entry, rocs[key]))
    if entry.get('confusion_matrix'):
      draw(f'confusion_{stem}.png', lambda: confusion_figure(results, entry))
  draw(RN_ACCURACY_FILE, lambda: rn_accuracy_figure(results))
  return outcome
