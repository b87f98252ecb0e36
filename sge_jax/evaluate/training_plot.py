"""The encoder training log of a run (``metrics.jsonl``, stage 'train') read
into curves, and its plot ``training_loss.png`` (``plots`` describes it).
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from typing import Any, Optional, Sequence

import numpy as np

from sge_jax import workdir as workdir_lib
from sge_jax.data import input_files
from sge_jax.evaluate.plot_style import new_figure

TRAINING_LOSS_FILE = 'training_loss.png'
# metrics.jsonl is read whole for the training-loss plot; a far larger file is
# not a training log of this package (a few kB per thousand steps).
MAX_METRICS_BYTES = 256 * 2**20
# A panel gets a log y-axis when its largest value is this many times its
# smallest (both positive).
_LOG_SCALE_RATIO = 30.0


@dataclasses.dataclass
class TrainingCurves:
  """The encoder training log of a run (``metrics.jsonl``, stage 'train').

  Attributes:
    models: model names, in the order the log first names them.
    steps: [L] training steps of the logging records.
    total, reconstruction: model -> [L] mean loss of the training batches
      since the previous record (NaN where the log has none).
    validation_steps: [E] steps of the per-epoch validation records.
    validation: model -> [E] validation reconstruction loss.
    stopped: model -> the validation step at which it stopped early.
  """
  models: list[str]
  steps: np.ndarray
  total: dict[str, np.ndarray]
  reconstruction: dict[str, np.ndarray]
  validation_steps: np.ndarray
  validation: dict[str, np.ndarray]
  stopped: dict[str, int]


def _loss(value: Any) -> float:
  """A logged loss as a float; the log writes non-finite ones as 'nan',
  'inf', '-inf'; anything else is NaN."""
  if isinstance(value, (int, float)) and not isinstance(value, bool):
    return float(value)
  if value in ('nan', 'inf', '-inf'):
    return float(value)
  return math.nan


def _step(record: dict[str, Any]) -> Optional[int]:
  """The record's training step: an int in [0, 2**62), else None."""
  step = record.get('step')
  if isinstance(step, int) and not isinstance(step, bool) and (
      0 <= step < 2**62):
    return step
  return None


def _columns(records: list[tuple[int, dict]], models: list[str]
             ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """(steps [n] in step order, model -> values [n]) of (step, {model: value})
  pairs."""
  order = np.argsort([step for step, _ in records], kind='stable')
  records = [records[i] for i in order]
  steps = np.asarray([step for step, _ in records], np.int64)
  return steps, {model: np.asarray([_loss(values.get(model))
                                    for _, values in records], float)
                 for model in models}


def parse_training_log(lines) -> Optional[TrainingCurves]:
  """The TrainingCurves of metrics.jsonl lines, or None when they hold no
  training record. Lines that are not a JSON object of stage 'train' with an
  integer step (cut short by a kill, other stages) are passed over."""
  totals, reconstructions, validations = [], [], []
  models: dict[str, None] = {}
  stopped: dict[str, int] = {}
  for line in lines:
    try:
      record = json.loads(line)
    except (ValueError, RecursionError):
      continue
    if not isinstance(record, dict) or record.get('stage') != 'train':
      continue
    step = _step(record)
    if step is None:
      continue
    for field, found in (('loss/total', totals),
                         ('loss/reconstruction', reconstructions),
                         ('validation/reconstruction', validations)):
      values = record.get(field)
      if isinstance(values, dict):
        found.append((step, values))
        models.update(dict.fromkeys(str(name) for name in values))
    active = record.get('active')
    if isinstance(active, dict):
      for name, flag in active.items():
        if flag is False and name not in stopped:
          stopped[str(name)] = step
  if not totals and not validations:
    return None
  names = list(models)
  steps, total = _columns(totals, names)
  reconstruction_steps, reconstruction = _columns(reconstructions, names)
  if not np.array_equal(reconstruction_steps, steps):   # a damaged log
    reconstruction = {name: np.full(steps.size, math.nan) for name in names}
  validation_steps, validation = _columns(validations, names)
  return TrainingCurves(names, steps, total, reconstruction, validation_steps,
                        validation, stopped)


def training_log_path(workdir: pathlib.Path) -> Optional[pathlib.Path]:
  """The metrics.jsonl of the run whose results go to ``workdir``: its own,
  or for a re-evaluation (``<run>/evaluations/<name>/``) the run's; None when
  there is none."""
  candidates = [workdir / workdir_lib.METRICS_FILE]
  if workdir.parent.name == workdir_lib.EVALUATIONS_DIR:
    candidates.append(workdir.parent.parent / workdir_lib.METRICS_FILE)
  return next((path for path in candidates
               if path.exists() or path.is_symlink()), None)


def read_training_log(path: pathlib.Path
                      ) -> tuple[Optional[TrainingCurves], Optional[str]]:
  """(curves or None, why the file was not read or None)."""
  kind = input_files.not_regular(path)
  if kind:
    return None, f'{path} is {kind}, not a regular file'
  try:
    size = path.stat().st_size
    if size > MAX_METRICS_BYTES:
      return None, (f'{path} holds {size / 2**20:.0f} MiB, more than the '
                    f'{MAX_METRICS_BYTES // 2**20} MiB a training log of this '
                    'package reaches')
    with open(path, encoding='utf-8', errors='replace') as file:
      return parse_training_log(file), None
  except OSError as error:
    return None, f'{path} cannot be read ({error.strerror or error})'


def _log_scale_fits(values: Sequence[np.ndarray]) -> bool:
  """Whether the finite values are all positive and span more than
  ``_LOG_SCALE_RATIO``."""
  finite = np.concatenate([v[np.isfinite(v)] for v in values] or [[]])
  return bool(finite.size and finite.min() > 0
              and finite.max() > _LOG_SCALE_RATIO * finite.min())


def training_loss_figure(results: dict[str, Any], curves: TrainingCurves):
  """Total loss (left) and reconstruction loss (right: training batches as
  lines, validation per epoch as markers) per model against the training
  step; a log y-axis where a panel's values span more than 30x."""
  from matplotlib.lines import Line2D  # pylint: disable=g-import-not-at-top
  figure = new_figure((11, 4.4))
  total_axes, reconstruction_axes = figure.subplots(1, 2)
  for index, model in enumerate(curves.models):
    color = f'C{index % 10}'
    total_axes.plot(curves.steps, curves.total[model], color=color,
                    linewidth=1.3, label=model)
    reconstruction_axes.plot(curves.steps, curves.reconstruction[model],
                             color=color, linewidth=1.0, alpha=0.7)
    reconstruction_axes.plot(curves.validation_steps, curves.validation[model],
                             color=color, linestyle='none', marker='o',
                             markersize=3.5)
    if model in curves.stopped:
      where = curves.validation_steps == curves.stopped[model]
      reconstruction_axes.plot(curves.validation_steps[where],
                               curves.validation[model][where], color=color,
                               linestyle='none', marker='x', markersize=10,
                               markeredgewidth=2)
  for axes, values in ((total_axes, curves.total.values()),
                       (reconstruction_axes,
                        [*curves.reconstruction.values(),
                         *curves.validation.values()])):
    if _log_scale_fits(list(values)):
      axes.set_yscale('log')
    axes.set_xlabel('training step')
    axes.grid(alpha=0.3)
  total_axes.set_ylabel('total loss (training batches)')
  total_axes.set_title('total loss per logging step', fontsize='medium')
  total_axes.legend(fontsize='small', title='model')
  reconstruction_axes.set_ylabel('reconstruction loss')
  reconstruction_axes.set_title('reconstruction loss: training and validation',
                                fontsize='medium')
  proxies = [Line2D([], [], color='grey', linewidth=1.0,
                    label='training batches, per logging step'),
             Line2D([], [], color='grey', linestyle='none', marker='o',
                    markersize=3.5, label='validation, per epoch')]
  if curves.stopped:
    proxies.append(Line2D([], [], color='grey', linestyle='none', marker='x',
                          markersize=8, markeredgewidth=2,
                          label='stopped early'))
  reconstruction_axes.legend(handles=proxies, fontsize='small')
  figure.suptitle(f'{results["dataset"]}: encoder training, one colour per '
                  'model', fontsize='medium')
  return figure
