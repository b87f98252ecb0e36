"""Where each released-code behaviour (quirk) can act.

A quirk switched on acts only where its part of the method runs: R1 shapes the
RN's rows (protocol A), R7 acts on BIWI, R11 on CME, and so on
(``quirk_applicability``). ``quirks_on`` lists those that act, as results.json
and encodings.npz record them; ``quirks_not_applicable`` the others, with why.
"""

from __future__ import annotations

import ml_collections

from sge_jax.config.checks import parse_list
from sge_jax.config.fields import CME_DATASET, QUIRKS


def quirk_label(field: str) -> str:
  """'extraction_batches' -> 'R1 extraction_batches'."""
  return next(f'{code} {name}' for code, name in QUIRKS.items() if name == field)


def runs_cme(config: ml_collections.ConfigDict, dataset: str) -> bool:
  """Whether the CME protocol runs: asked for, or B on the CME dataset."""
  protocols = {p.upper() for p in parse_list(config.eval.protocols)}
  return 'CME' in protocols or ('B' in protocols and dataset == CME_DATASET)


def quirk_applicability(config: ml_collections.ConfigDict,
                        dataset: str) -> dict[str, str]:
  """Quirk field -> '' when it can act on this resolved config with the data
  named ``dataset`` (the dataset trained or scored), else why it cannot.

  R12 (equal_id_counts) is a check and always applies.
  """
  model, quirks = config.model, config.get('quirks') or {}
  has_a = 'A' in {p.upper() for p in parse_list(config.eval.protocols)}
  plus = model.pretext == 'rev_rec_plus'
  trained_here = not config.get('encoder_workdir')
  needs_a = '' if has_a else "needs protocol A (it shapes the RN's rows)"
  needs_plus = '' if plus else 'needs model.pretext=rev_rec_plus'
  if plus and quirks.get('plus_from_rev_rec'):
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
          '' if quirks.get('extraction_batches')
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
      'second_nearest': '' if runs_cme(config, dataset) else 'CME only',
      'equal_id_counts': '',
  }


def quirks_on(config: ml_collections.ConfigDict, dataset: str) -> list[str]:
  """'R1 extraction_batches', ... for every quirk a resolved config turns on
  that can act with the data named ``dataset`` (``quirk_applicability``)."""
  quirks = config.get('quirks') or {}
  reasons = quirk_applicability(config, dataset)
  return [quirk_label(field) for field in QUIRKS.values()
          if quirks.get(field) and not reasons[field]]


def quirks_not_applicable(config: ml_collections.ConfigDict,
                          dataset: str) -> dict[str, str]:
  """{'R3 plus_test_copies': why, ...} for the quirks switched on that cannot
  act with the data named ``dataset``."""
  quirks = config.get('quirks') or {}
  reasons = quirk_applicability(config, dataset)
  return {quirk_label(field): reasons[field] for field in QUIRKS.values()
          if quirks.get(field) and reasons[field]}

