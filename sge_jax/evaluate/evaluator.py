"""The one shape every evaluation protocol has: settings and encodings in,
named result entries out.

An evaluator is a function ``EvaluationInputs -> Outcome``; a protocol's module
``protocol_<name>.py`` defines it as ``EVALUATOR``, and naming the protocol in
``PROTOCOLS`` (``sge_jax/config/fields.py``) registers it
(``sge_jax.evaluate.protocols.EVALUATORS``).
``sge_jax.evaluate.stage.evaluate_run`` runs the planned ones in registry order
and merges their outcomes into results.json (entries, notes, warnings, the
``rn`` section), the plots (ROC curves) and ``rn.npz`` (a trained RN).
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
from typing import Any, Callable, Optional

from sge_jax.config import EvalSettings, RNSettings, RunSettings
from sge_jax.encode.encodings import EncodingSet
from sge_jax.evaluate.rn_result import RNResult
from sge_jax.evaluate.released_rows import ReleasedRows
from sge_jax.evaluate.result_cache import ResultCache

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EvaluationInputs:
  """What every evaluator gets.

  Attributes:
    run: the run's settings (``run.eval`` above all; ``run.data.view``,
      ``run.quirks``, ...).
    encoding_set: the exported CAGEs of every split.
    rn_settings: ``run.rn`` as it applies to the dataset scored
      (``sge_jax.config.quirks.rn_settings_for``).
    rows: the released code's RN row rules (R1, R3, R5) that are on.
    saved_rn_path: where an RN saved by an earlier evaluation may lie
      (``rn.npz``; it need not exist).
    cache: results an earlier evaluation of the same data stored (the
      baselines', ``result_cache``), and where this one stores them.
    window_results: for the walk-level evaluator (``walk_evaluator``): the
      window results the protocols handed over (``Outcome.window_results``).
  """
  run: RunSettings
  encoding_set: EncodingSet
  rn_settings: RNSettings
  rows: ReleasedRows
  saved_rn_path: pathlib.Path
  cache: ResultCache = dataclasses.field(
      default_factory=lambda: ResultCache(None))
  window_results: tuple = ()

  @property
  def settings(self) -> EvalSettings:
    """The eval section of the run's settings."""
    return self.run.eval


@dataclasses.dataclass
class Outcome:
  """What an evaluator adds to the results.

  Attributes:
    entries: {key: entry}, key '<protocol>/<probe split>[/...]' (the entry
      fields: ``sge_jax.evaluate.results``).
    rocs: entry key -> {method: (fpr [P], tpr [P])}, CAGEs first, for the
      ROC plots (results.json keeps no curves).
    notes: remarks for results.json and report.md.
    warnings: the notes the console summary repeats (each is a note too).
    rn: the ``rn`` section of results.json when the evaluator ran the
      recognition network, else None.
    trained_rn: the RN trained here (saved to ``rn.npz``), None when none was
      trained (or it was re-scored from a saved one).
    rn_digest: the digest of the encodings and rows ``trained_rn`` learned
      from (``saved_rn.encodings_digest``), saved with it.
    window_results: with walks asked for (eval.level 'walk' or 'both'), the
      window results of each probe split that the walk-level evaluator
      scores as walks (``walk_evaluator.ClassifiedWindows``,
      ``RankedWindows``; ``hand_to_walk_level``).
    note_marks: per window result, how many notes and warnings preceded it:
      the walk level's notes on it go there.
  """
  entries: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
  rocs: dict[str, dict[str, tuple]] = dataclasses.field(default_factory=dict)
  notes: list[str] = dataclasses.field(default_factory=list)
  warnings: list[str] = dataclasses.field(default_factory=list)
  rn: Optional[dict[str, Any]] = None
  trained_rn: Optional[RNResult] = None
  rn_digest: str = ''
  window_results: list = dataclasses.field(default_factory=list)
  note_marks: list[tuple[int, int]] = dataclasses.field(default_factory=list)

  def note(self, message: str, warn: bool = False) -> None:
    """A remark for results.json; ``warn`` also puts it among the warnings
    that the console summary repeats."""
    self.notes.append(message)
    if warn:
      self.warnings.append(message)
    (_log.warning if warn else _log.info)('[eval] %s', message)

  def hand_to_walk_level(self, windows: Any) -> None:
    """Hands one probe split's window results to the walk-level evaluator
    (``walk_evaluator``); its notes on them follow the notes made so far."""
    self.window_results.append(windows)
    self.note_marks.append((len(self.notes), len(self.warnings)))


@dataclasses.dataclass(frozen=True)
class Evaluator:
  """A protocol as the evaluate stage runs it.

  Attributes:
    name: the protocol's name in ``config.eval.protocols`` (``PROTOCOLS`` in
      ``sge_jax/config/fields.py``) and the ``protocol`` field of its entries.
    evaluate: inputs -> outcome.
    headline_rank: which protocol's entry becomes results.json's headline
      when several ran: the lowest rank that scored.
    walk_level: whether it also scores whole walks (eval.level 'walk' or
      'both'; its aggregations are ``EvalSettings.aggregations(name)``).
  """
  name: str
  evaluate: Callable[[EvaluationInputs], Outcome]
  headline_rank: int
  walk_level: bool = False
