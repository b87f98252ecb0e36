"""The re-identification protocols on exported CAGEs (docs/method.md §2.4, §7):
the registry, and the rule that picks the ones a run evaluates.

Each protocol is an evaluator in its own module (the interface:
``sge_jax.evaluate.evaluator``), registered in ``EVALUATORS`` under its name in
``config.eval.protocols``:

* **A** (``protocol_a.py``, the CAGEs paper): a recognition network trained on
  the ``train`` split classifies every other split; window and walk level.
* **B** (``protocol_b.py``, the successor papers): probe -> gallery retrieval
  of sequence-level CAGEs; window and walk level.
* **CME** (``protocol_cme.py``, CASIA-B cross-condition matching): probe ->
  gallery nearest neighbour with the self-match rule; window level. On the
  ``CASIA_B_match`` dataset a requested B runs as CME (``protocol_plan``).

What they share is in ``protocol_common.py``; their walk level in
``walk_level.py``. ``sge_jax.evaluate.stage.evaluate_run`` runs the planned
evaluators in registry order and merges their outcomes.
"""

from __future__ import annotations

import logging

from sge_jax.config import CME_DATASET, EvalSettings
from sge_jax.encode.encodings import EncodingSet
from sge_jax.evaluate.evaluator import Evaluator
from sge_jax.evaluate.protocol_a import EVALUATOR as PROTOCOL_A
from sge_jax.evaluate.protocol_b import EVALUATOR as PROTOCOL_B
from sge_jax.evaluate.protocol_cme import EVALUATOR as PROTOCOL_CME
# The protocols' own functions, for callers that score one protocol directly.
from sge_jax.evaluate.protocol_a import protocol_a  # noqa: F401
from sge_jax.evaluate.protocol_b import protocol_b  # noqa: F401
from sge_jax.evaluate.protocol_cme import (protocol_cme,  # noqa: F401
                                           released_cme_rank1)

_log = logging.getLogger(__name__)

# The registry: every protocol, in the order they run and are reported (the
# order of PROTOCOLS in sge_jax/config/fields.py, which lists the same names).
EVALUATORS: dict[str, Evaluator] = {
    evaluator.name: evaluator
    for evaluator in (PROTOCOL_A, PROTOCOL_B, PROTOCOL_CME)}


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
