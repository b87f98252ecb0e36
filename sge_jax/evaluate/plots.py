"""PNG plots of a results dict: CMC curves (CAGEs vs baselines), micro-averaged
ROC, RN accuracy per epoch. matplotlib is optional: without it the plots are
skipped with a note."""

from __future__ import annotations

import logging
import pathlib
import re
from typing import Any, Optional

import numpy as np

from sge_jax import workdir as workdir_lib
from sge_jax.evaluate.report import baseline_title, is_stat, is_walk_entry

NO_MATPLOTLIB_NOTE = ('matplotlib is not installed: plots skipped '
                      '(pip install matplotlib to get them).')

_log = logging.getLogger(__name__)


def _load_matplotlib():
  """(Figure, FigureCanvasAgg) or None when matplotlib is not installed.

  The object-oriented API with the Agg canvas: no pyplot state, no display.
  """
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top,unused-import
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
    from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return Figure, FigureCanvasAgg


def matplotlib_ticker():
  """matplotlib.ticker (only called once matplotlib is known to import)."""
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top
  return ticker


def _file_stem(key: str) -> str:
  return re.sub(r'[^A-Za-z0-9_.-]+', '_', key)


def _save(figure, canvas_class, path: pathlib.Path) -> None:
  canvas_class(figure)
  figure.tight_layout()
  workdir_lib.write_atomically(
      path, lambda file: figure.savefig(file, format='png', dpi=110))


def _cmc_curves(entry: dict[str, Any]) -> dict[str, tuple]:
  """Method title -> (mean curve, std curve or None)."""
  def curve(values):
    if is_stat(values):
      return np.asarray(values['mean'], float), np.asarray(values['std'], float)
    return np.asarray(values, float), None

  curves = {'CAGEs': curve(entry['cmc'])}
  for name, baseline in entry.get('baselines', {}).items():
    if 'cmc' in baseline:
      curves[baseline_title(name)] = curve(baseline['cmc'])
  return curves


def _plot_cmc(matplotlib_api, key: str, entry: dict[str, Any],
              workdir: pathlib.Path) -> str:
  figure_class, canvas_class = matplotlib_api
  figure = figure_class(figsize=(5.5, 4))
  axes = figure.add_subplot()
  for title, (mean, std) in _cmc_curves(entry).items():
    ranks = np.arange(1, mean.size + 1)
    axes.plot(ranks, 100 * mean, marker='.' if mean.size <= 30 else None,
              label=title)
    if std is not None:
      axes.fill_between(ranks, 100 * (mean - std), 100 * (mean + std),
                        alpha=0.2)
  axes.set_xlabel('rank k')
  axes.xaxis.set_major_locator(matplotlib_ticker().MaxNLocator(integer=True))
  axes.set_ylabel('recognition rate (%)')
  axes.set_ylim(0, 101)
  axes.set_title(f'CMC, {entry["label"]}')
  axes.grid(alpha=0.3)
  axes.legend(loc='lower right', fontsize='small')
  name = f'cmc_{_file_stem(key)}.png'
  _save(figure, canvas_class, workdir / name)
  return name


def _plot_roc(matplotlib_api, key: str, entry: dict[str, Any],
              rocs: dict[str, tuple], workdir: pathlib.Path) -> str:
  figure_class, canvas_class = matplotlib_api
  figure = figure_class(figsize=(5, 4.5))
  axes = figure.add_subplot()
  for name, (fpr, tpr) in rocs.items():
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    axes.plot(fpr, tpr, label=f'{baseline_title(name)} (nAUC {100 * area:.1f})')
  axes.plot([0, 1], [0, 1], color='grey', linestyle='--', linewidth=0.8)
  axes.set_xlabel('false positive rate')
  axes.set_ylabel('true positive rate')
  axes.set_title(f'micro-averaged ROC (nAUC), {entry["label"]}')
  axes.legend(loc='lower right', fontsize='small')
  name = f'roc_{_file_stem(key)}.png'
  _save(figure, canvas_class, workdir / name)
  return name


def _plot_rn_history(matplotlib_api, results: dict[str, Any],
                     workdir: pathlib.Path) -> Optional[str]:
  rn = results.get('rn')
  history = (rn or {}).get('history')
  if not history or (history.get('val_accuracy') is None
                     and not history.get('test_accuracy')):
    return None
  figure_class, canvas_class = matplotlib_api
  figure = figure_class(figsize=(6, 4))
  axes = figure.add_subplot()
  epochs = np.arange(1, len(history['train_loss']) + 1)
  if history.get('val_accuracy') is not None:
    axes.plot(epochs, 100 * np.asarray(history['val_accuracy'], float),
              label='validation', color='black')
  for split, curve in history['test_accuracy'].items():
    label = split if split == 'test' else f'test split {split}'
    axes.plot(epochs, 100 * np.asarray(curve, float), label=label, alpha=0.8)
  for entry in results['entries'].values():
    if (entry['protocol'] == 'A' and 'selected_epoch' in entry
        and not is_walk_entry(entry)):
      axes.axvline(entry['selected_epoch'], color='grey', linestyle=':',
                   linewidth=0.8)
  axes.set_xlabel('RN epoch')
  axes.xaxis.set_major_locator(matplotlib_ticker().MaxNLocator(integer=True))
  axes.set_ylabel('sequence accuracy (%)')
  axes.set_title(f'RN accuracy per epoch (dotted: {results["selection"]} '
                 'selection)')
  axes.legend(fontsize='small')
  name = 'rn_accuracy.png'
  _save(figure, canvas_class, workdir / name)
  return name


def write_plots(results: dict[str, Any], workdir: pathlib.Path,
                rocs: Optional[dict[str, dict[str, tuple]]] = None
                ) -> Optional[list[str]]:
  """CMC (CAGEs vs baselines), micro ROC and RN accuracy PNGs.

  Walk-level entries are plotted for the configured aggregation (the first of
  ``results['walks']['aggregations']``); the other's curves are in results.json.

  Returns:
    The file names written, or None when matplotlib is not installed.
  """
  matplotlib_api = _load_matplotlib()
  if matplotlib_api is None:
    _log.info('[eval] %s', NO_MATPLOTLIB_NOTE)
    return None
  shown = ((results.get('walks') or {}).get('aggregations') or [None])[0]
  written = []
  for key, entry in results['entries'].items():
    if is_walk_entry(entry) and entry.get('aggregation') != shown:
      continue
    if 'cmc' in entry:
      written.append(_plot_cmc(matplotlib_api, key, entry, workdir))
    if rocs and rocs.get(key):
      written.append(_plot_roc(matplotlib_api, key, entry, rocs[key], workdir))
  history_plot = _plot_rn_history(matplotlib_api, results, workdir)
  if history_plot:
    written.append(history_plot)
  return written
