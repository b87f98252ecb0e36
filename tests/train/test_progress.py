"""Progress lines and the divergence warning."""

import numpy as np

from sge_jax.train import progress

NAMES = ['rev_rec/x', 'rev_rec/y', 'rev_rec/z']


def _losses(values):
  return {'total': np.asarray(values, np.float64)}


def test_first_call_shows_no_eta_then_rate_and_eta():
  sums = {'reconstruction': 1.0, 'total': 2.0}
  first = progress.progress_line(1, 2, 4, 10, sums, None, 8.1)
  assert 'first call (compilation included) 8.1 s' in first and 'ETA' not in first
  later = progress.progress_line(1, 2, 8, 10, sums, 2.0, 8.1)
  assert '2.00 steps/s  ETA 0:01' in later
  assert 'rec 1' in later


def test_divergence_is_growth_or_an_absurd_size_per_sequence():
  first = {'total': np.array([700.0, 700.0, 700.0])}
  calm = _losses([[650.0, 690.0, 680.0], [640.0, 660.0, 650.0]])
  assert progress.divergence_warning(first, calm, NAMES, 128) is None
  grown = _losses([[650.0, 1e9, 680.0]])
  warning = progress.divergence_warning(first, grown, NAMES, 128)
  assert 'rev_rec/y' in warning and 'grew from 700 to 1e+09' in warning
  huge_from_the_start = {'total': np.array([1e30, 1e30, 1e30])}
  warning = progress.divergence_warning(huge_from_the_start,
                                        _losses([[1e30, 1e30, 1e30]]), NAMES, 128)
  assert 'per sequence' in warning and 'learning_rate' in warning
