"""Where each released-code behaviour (quirk) can act.

A quirk switched on acts only where its part of the method runs: R1 shapes the
RN's rows (protocol A), R7 acts on BIWI, R11 on CME, and so on
(``quirk_applicability``). ``quirks_on`` lists those that act, as results.json
and encodings.npz record them; ``quirks_not_applicable`` the others, with why;
``procedure_record`` both, for results.json and report.md.
``rn_settings_for`` applies R6's tie rule, which depends on the dataset scored.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sge_jax.config.fields import CME_DATASET, QUIRKS
from sge_jax.config.settings import RNSettings, RunSettings, test_ties


def quirk_label(field: str) -> str:
  """'extraction_batches' -> 'R1 extraction_batches'."""
  return next(f'{code} {name}' for code, name in QUIRKS.items() if name == field)


def runs_cme(run: RunSettings, dataset: str) -> bool:
  """Whether the CME protocol runs: asked for, or B on the CME dataset."""
  protocols = run.eval.protocols
  return 'CME' in protocols or ('B' in protocols and dataset == CME_DATASET)


def quirk_applicability(run: RunSettings, dataset: str) -> dict[str, str]:
  """Quirk field -> '' when it can act in this run with the data named
  ``dataset`` (the dataset trained or scored), else why it cannot.

  R12 (equal_id_counts) is a check and always applies.
  """
  model, quirks = run.model, run.quirks
  has_a = 'A' in run.eval.protocols
  plus = model.pretext == 'rev_rec_plus'
  trained_here = run.trains_here
  needs_a = '' if has_a else "needs protocol A (it shapes the RN's rows)"
  needs_plus = '' if plus else 'needs model.pretext=rev_rec_plus'
  if plus and quirks.plus_from_rev_rec:
    sorting = ("with R2 plus_from_rev_rec the sorting models' CAGEs are not "
               'used')
  else:
    sorting = ('' if model.pretext in ('sorting', 'rev_rec_plus')
               else 'no sorting pretext task')
  la_forward = model.attention == 'LA' and model.pretext in ('prediction',
                                                             'sorting')
  not_here = 'the encoders come from config.encoder_workdir'
  return {
      'extraction_batches': needs_a,
      'plus_from_rev_rec': needs_plus,
      'plus_test_copies': (needs_plus or needs_a or (
          '' if quirks.extraction_batches
          else 'acts only with R1 extraction_batches on')),
      'fixed_rn_shuffle': needs_a,
      'full_test_batches': needs_a,
      'select_on_test': needs_a,
      'biwi_two_thirds': ('BIWI only' if dataset != 'BIWI'
                          else '' if trained_here else not_here),
      'reversed_la_mask': (
          'every LA task already reconstructs in reverse' if not la_forward
          else '' if trained_here else not_here),
      'redrawn_sorting': sorting,
      'second_nearest': '' if runs_cme(run, dataset) else 'CME only',
      'equal_id_counts': '',
  }


def quirks_on(run: RunSettings, dataset: str) -> list[str]:
  """'R1 extraction_batches', ... for every quirk the run turns on that can
  act with the data named ``dataset`` (``quirk_applicability``)."""
  reasons = quirk_applicability(run, dataset)
  return [quirk_label(field) for field in QUIRKS.values()
          if getattr(run.quirks, field) and not reasons[field]]


def quirks_not_applicable(run: RunSettings, dataset: str) -> dict[str, str]:
  """{'R3 plus_test_copies': why, ...} for the quirks switched on that cannot
  act with the data named ``dataset``."""
  reasons = quirk_applicability(run, dataset)
  return {quirk_label(field): reasons[field] for field in QUIRKS.values()
          if getattr(run.quirks, field) and reasons[field]}


def procedure_record(run: RunSettings, dataset: str) -> dict[str, Any]:
  """{'name': 'clean'|'released', 'quirks_on': ['R1 extraction_batches', ...],
  'quirks_not_applicable': {'R7 biwi_two_thirds': 'BIWI only', ...},
  'normalization': ...} for results.json and report.md; ``dataset`` names the
  encodings scored (quirks that cannot act on them are not 'on')."""
  return {
      'name': run.procedure,
      'quirks_on': quirks_on(run, dataset),
      'quirks_not_applicable': quirks_not_applicable(run, dataset),
      'normalization': run.data.normalization,
  }


def rn_settings_for(run: RunSettings, dataset: str) -> RNSettings:
  """The RN settings that score the encodings of the data named ``dataset``
  (R6's tie rule depends on it: ``settings.test_ties``)."""
  return dataclasses.replace(
      run.rn, test_ties=test_ties(run.quirks.select_on_test, dataset))
