"""The re-identification protocols on exported CAGEs (docs/method.md §2.4,
§7): the registry, and the rule that picks the ones a run evaluates.

Each protocol is an evaluator (the interface: ``sge_jax.evaluate.evaluator``)
in its own module ``protocol_<name>.py`` (lower case), which defines
``EVALUATOR``. The one registration is the protocol's name in ``PROTOCOLS``
(``sge_jax/config/fields.py``): the names a user may request, in the order
they run and are reported. ``EVALUATORS`` is built from that list, so a new
protocol is one module plus one name there.

* **A** (``protocol_a.py``, the CAGEs paper): a recognition network trained on
  the ``train`` split classifies every other split; window and walk level.
* **B** (``protocol_b.py``, the successor papers): probe -> gallery retrieval
  of sequence-level CAGEs; window and walk level.
* **CME** (``protocol_cme.py``, CASIA-B cross-condition matching): probe ->
  gallery nearest neighbour with the self-match rule; window level. On the
  ``CASIA_B_match`` dataset a requested B runs as CME (``protocol_plan``).

What they share is in ``protocol_common.py``. The walk level is an evaluator
too (``walk_evaluator.EVALUATOR``): A and B hand it their window results
(``Outcome.window_results``) and it scores them as walks.
``sge_jax.evaluate.stage.evaluate_run`` runs the planned evaluators in
registry order, then the walk level, and merges their outcomes.
"""

from __future__ import annotations

import importlib
import logging

from sge_jax.config import CME_DATASET, PROTOCOLS, EvalSettings
from sge_jax.encode.encodings import EncodingSet
from sge_jax.evaluate.evaluator import Evaluator

_log = logging.getLogger(__name__)


def evaluator_module(name: str) -> str:
  """The module that implements protocol ``name``: 'CME' ->
  'sge_jax.evaluate.protocol_cme'."""
  return f'{__package__}.protocol_{name.lower()}'


def _load_evaluator(name: str) -> Evaluator:
  evaluator = importlib.import_module(evaluator_module(name)).EVALUATOR
  if evaluator.name != name:     # a copied module whose name was not changed
    raise ImportError(f'{evaluator_module(name)}.EVALUATOR is named '
                      f'{evaluator.name!r}, not {name!r}')
  return evaluator


# The registry: every protocol of PROTOCOLS, in that order.
EVALUATORS: dict[str, Evaluator] = {name: _load_evaluator(name)
                                    for name in PROTOCOLS}


def protocol_plan(encoding_set: EncodingSet, settings: EvalSettings,
                  notes: list[str]) -> tuple[str, ...]:
  """The protocols to run, in registry order: the configured ones, with B run
  as CME on the CME dataset (``CASIA_B_match``, read from the encodings);
  notes that rule when it acts."""
  plan = list(settings.protocols)
  if encoding_set.metadata.dataset == CME_DATASET and 'B' in plan:
    plan.remove('B')
    if 'CME' not in plan:
      plan.append('CME')
    message = (f'{CME_DATASET}: protocol B runs as CME (probe -> gallery '
               'nearest neighbour with the self-match rule for equal '
               'conditions).')
    notes.append(message)
    _log.info('[eval] %s', message)
  return tuple(name for name in EVALUATORS if name in plan)
