"""What every plot shares: matplotlib (optional, its object-oriented API on
the Agg canvas), new figures, atomic PNG writes, titles, and the wording and
line styles of the methods (``plots``, ``training_plot``).
"""

from __future__ import annotations

import pathlib
import re
import textwrap
from typing import Any

from sge_jax import workdir as workdir_lib
from sge_jax.evaluate.report import is_walk_entry, percent


def load_matplotlib() -> bool:
  """Whether matplotlib imports (the figures use its object-oriented API with
  the Agg canvas: no pyplot state, no display)."""
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top,unused-import
    from matplotlib.backends import backend_agg  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return False
  return True


def new_figure(size: tuple[float, float]):
  """A matplotlib Figure of ``size`` inches on an Agg canvas."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  figure = Figure(figsize=size)
  FigureCanvasAgg(figure)
  return figure


def matplotlib_ticker():
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top
  return ticker


def file_stem(key: str) -> str:
  return re.sub(r'[^A-Za-z0-9_.-]+', '_', key)


def save_figure(figure, path: pathlib.Path) -> None:
  figure.tight_layout()
  workdir_lib.write_atomically(
      path, lambda file: figure.savefig(file, format='png', dpi=110))


def set_title(axes, title: str, width: int = 76) -> None:
  axes.set_title(textwrap.fill(title, width), fontsize='medium')


# ---------------------------------------------------------------- wording


def level_phrase(entry: dict[str, Any]) -> str:
  """'windows', 'walks (mean)' or 'walks (vote) vs gallery windows'."""
  if not is_walk_entry(entry):
    return 'windows'
  phrase = f'walks ({entry.get("aggregation")})'
  if entry.get('gallery_level'):
    phrase += f' vs gallery {entry["gallery_level"]}s'
  return phrase


def protocol_phrase(entry: dict[str, Any]) -> str:
  if entry['protocol'] == 'CME':
    return f'CME {entry.get("conditions", "")}'.strip()
  return f'protocol {entry["protocol"]}'


def seeds_phrase(results: dict[str, Any], how: str) -> str:
  seeds = results.get('num_seeds')
  return f' ({how} over {seeds} seeds)' if seeds else ''


def plot_title(results: dict[str, Any], entry: dict[str, Any],
               what: str) -> str:
  """'KGBD: CMC, protocol B, test -> train, walks (vote) vs gallery walks':
  dataset, what is plotted, protocol, probe -> gallery, level (aggregation)."""
  return (f'{results["dataset"]}: {what}, {protocol_phrase(entry)}, '
          f'{entry["probe"]} -> {entry["gallery"]}, {level_phrase(entry)}')


def cmc_label(method: str, values: dict[str, Any]) -> str:
  """'CAGEs (Rank-1 84.6%)' ('84.6 ± 1.2%' in the aggregate)."""
  if values.get('rank1') is None:
    return method
  return f'{method} (Rank-1 {percent(values["rank1"])}%)'


def method_style(index: int) -> dict[str, Any]:
  """Colour, line style and marker of the index-th method (CAGEs first), so
  that curves lying on each other stay apart."""
  linestyles = ('-', '--', '-.', ':', (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)))
  markers = ('o', 's', '^', 'D', 'v', 'P')
  return {'color': f'C{index % 10}',
          'linestyle': linestyles[index % len(linestyles)],
          'marker': markers[index % len(markers)],
          'linewidth': 2.0 if index == 0 else 1.4}


def markevery(size: int, index: int):
  """Markers on every point of a short curve (up to 20), else on about ten
  points, shifted per method so that the markers of coinciding curves do not
  cover each other."""
  if size <= 20:
    return None
  step = size // 10
  return (index * max(1, step // 4), step)
