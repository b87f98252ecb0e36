"""The typed, frozen settings the stages read, one dataclass per section.

``RNSettings`` and ``EvalSettings`` are the checked, typed views of
``config.rn`` and ``config.eval``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import ml_collections

from sge_jax.config.checks import (int_at_least, one_of, parse_list,
                                   require)
from sge_jax.config.fields import (DISTANCES, EVAL_LEVELS, MANNERS, PROTOCOLS,
                                   RETRIEVAL_FEATURES, SELECTION_RULES,
                                   WALK_AGGREGATIONS)

# ----------------------------------------------------------------- typed settings


@dataclasses.dataclass(frozen=True)
class RNSettings:
  """The recognition network's settings (``config.rn`` plus the root seed).

  Attributes:
    manner: 'ap' or 'sc'.
    selection: 'val', 'fixed' or 'paper'.
    epochs: epochs to train.
    batch_size: samples per mini-batch (frames for 'ap', sequences for 'sc');
      clamped to the number of training samples.
    learning_rate: Adam step size.
    hidden: hidden width.
    val_fraction: share of each person's training sequences held out when
      selection = 'val'.
    epochs_per_call: epochs run per compiled call (progress is logged between
      calls).
    track_test: score the test splits after every epoch (test-accuracy curves
      and the 'paper' rule next to the chosen one); forced on for 'paper'.
    seed: the root seed (config.seed).
    fixed_shuffle: R4, one shuffle of the training samples for every epoch.
    test_ties: which of several best test epochs the 'paper' rule keeps:
      'first' (strict '>') or 'last' ('>=', R6 outside IAS).
  """
  manner: str = 'ap'
  selection: str = 'val'
  epochs: int = 300
  batch_size: int = 128
  learning_rate: float = 5e-4
  hidden: int = 256
  val_fraction: float = 0.1
  epochs_per_call: int = 50
  track_test: bool = True
  seed: int = 0
  fixed_shuffle: bool = False
  test_ties: str = 'first'

  def __post_init__(self):
    def check(condition, field, expected):
      require(condition, f'rn.{field}', getattr(self, field), expected)

    check(self.manner in MANNERS, 'manner', f'one of {", ".join(MANNERS)}')
    check(self.selection in SELECTION_RULES, 'selection',
          f'one of {", ".join(SELECTION_RULES)}')
    check(self.test_ties in ('first', 'last'), 'test_ties', 'first or last')
    for field in ('epochs', 'batch_size', 'hidden', 'epochs_per_call'):
      value = getattr(self, field)
      check(isinstance(value, int) and value >= 1, field, 'an integer >= 1')
    check(math.isfinite(self.learning_rate) and self.learning_rate > 0,
          'learning_rate', 'a finite number > 0')
    if self.selection == 'val':
      check(0.0 < self.val_fraction < 1.0, 'val_fraction',
            "a fraction in (0, 1) when selection='val'")

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict,
                  dataset: Optional[str] = None) -> 'RNSettings':
    """The settings of a config; quirks R4 and R6 (``select_on_test`` picks
    the 'paper' rule with the released ties: last, first on IAS) apply.
    ``dataset`` names the data scored (default ``config.data.name``)."""
    rn = config.rn
    quirks = config.get('quirks') or {}
    on_test = bool(quirks.get('select_on_test'))
    if dataset is None:
      dataset = str((config.get('data') or {}).get('name', ''))
    is_ias = dataset == 'IAS'
    return cls(manner=str(rn.manner),
               selection='paper' if on_test else str(rn.selection),
               fixed_shuffle=bool(quirks.get('fixed_rn_shuffle')),
               test_ties='last' if on_test and not is_ias else 'first',
               epochs=int(rn.epochs), batch_size=int(rn.batch_size),
               learning_rate=float(rn.learning_rate), hidden=int(rn.hidden),
               val_fraction=float(rn.get('val_fraction', 0.1)),
               epochs_per_call=int(rn.get('epochs_per_call', 50)),
               track_test=bool(rn.get('track_test', True)),
               seed=int(config.seed))


@dataclasses.dataclass(frozen=True)
class EvalSettings:
  """The evaluation's settings (``config.eval``).

  Attributes:
    protocols: requested protocols, a subset of PROTOCOLS in that order.
    distance: 'euclidean' or 'cosine' (retrieval and the baselines' k-NN).
    baselines: run the hand-crafted baselines.
    baseline_k: neighbours that vote in the protocol-A baselines (1 = NN).
    retrieval_features: 'concat' or 'mean'.
    cmc_max_rank: length of the stored retrieval CMC curves.
    plots: write PNG plots when matplotlib is installed.
    level: 'window', 'walk' or 'both' (what is re-identified).
    walk_aggregation: 'vote' or 'mean', the walk aggregation listed first.
    min_walk_windows: test walks with fewer windows are counted, not scored.
  """
  protocols: tuple[str, ...] = ('A', 'B')
  distance: str = 'euclidean'
  baselines: bool = True
  baseline_k: int = 1
  retrieval_features: str = 'concat'
  cmc_max_rank: int = 50
  plots: bool = True
  level: str = 'both'
  walk_aggregation: str = 'vote'
  min_walk_windows: int = 2

  @property
  def windows(self) -> bool:
    """Window-level entries are reported."""
    return self.level in ('window', 'both')

  @property
  def walks(self) -> bool:
    """Walk-level entries are asked for."""
    return self.level in ('walk', 'both')

  @property
  def aggregations(self) -> tuple[str, ...]:
    """Both walk aggregations, the configured one first."""
    return (self.walk_aggregation,) + tuple(
        a for a in WALK_AGGREGATIONS if a != self.walk_aggregation)

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> 'EvalSettings':
    section = config.eval
    requested = [p.upper() for p in parse_list(section.protocols)]
    unknown = [p for p in requested if p not in PROTOCOLS]
    require(requested and not unknown, 'eval.protocols', section.protocols,
            f'a comma-separated subset of {", ".join(PROTOCOLS)}')
    settings = cls(
        protocols=tuple(p for p in PROTOCOLS if p in requested),
        distance=str(section.distance),
        baselines=bool(section.baselines),
        baseline_k=int(section.get('baseline_k', 1)),
        retrieval_features=str(section.get('retrieval_features', 'concat')),
        cmc_max_rank=int(section.get('cmc_max_rank', 50)),
        plots=bool(section.get('plots', True)),
        level=str(section.get('level', 'both')),
        walk_aggregation=str(section.get('walk_aggregation', 'vote')),
        min_walk_windows=section.get('min_walk_windows', 2))
    one_of(settings.distance, 'eval.distance', DISTANCES)
    one_of(settings.retrieval_features, 'eval.retrieval_features',
           RETRIEVAL_FEATURES)
    one_of(settings.level, 'eval.level', EVAL_LEVELS)
    one_of(settings.walk_aggregation, 'eval.walk_aggregation',
           WALK_AGGREGATIONS)
    for field in ('baseline_k', 'cmc_max_rank', 'min_walk_windows'):
      int_at_least(getattr(settings, field), f'eval.{field}')
    require(settings.level != 'walk' or {'A', 'B'} & set(settings.protocols),
            'eval.level', settings.level,
            "'window' or 'both': walks are scored by protocols A and B, and "
            f'eval.protocols={section.protocols!r} has neither')
    return settings

