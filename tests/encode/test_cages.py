"""CAGE extraction: equals the model's context vectors, in model order."""

import jax
import numpy as np
import pytest

from sge_jax.encode import cages
from sge_jax.train import pretext
from sge_jax.models import GaitEncodingModel
from sge_jax.train.state import init_stacked_params
from tests.fixtures import ctrl_c


@pytest.mark.parametrize('decoder_input', ['zeros', 'shifted_target'])
@pytest.mark.slow
def test_cages_match_direct_model_calls_for_any_batching(decoder_input):
  model = GaitEncodingModel(hidden=4, num_joints=3, decoder_input=decoder_input)
  params = init_stacked_params(model, jax.random.key(0), 3, 5, 3)
  sequences = np.random.default_rng(0).normal(size=(7, 5, 3, 3)).astype(np.float32)
  tasks = pretext.pretext_tasks('rev_rec', 'LA')
  data = pretext.stacked_pretext_data(sequences, tasks, 0, 'test')
  encodings = cages.compute_cages(params, model, data, batch_size=3)
  assert encodings.shape == (7, 5, 12)
  for m in range(3):
    direct = model.apply({'params': jax.tree.map(lambda p: p[m], params)},
                         data['inputs'][m], data['targets'][m],
                         project=False)['cages']
    # Batched vs per-model programs may sum in another order (float32, ~k
    # terms per product over f steps): a few 1e-6 of the O(1) CAGEs.
    np.testing.assert_allclose(encodings[:, :, 4 * m:4 * (m + 1)], direct,
                               rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(cages.compute_cages(params, model, data, batch_size=16),
                             encodings, rtol=1e-5, atol=1e-5)


def test_config_hash_tracks_encoder_fields_only():
  from sge_jax.config import config_hash, get_config
  a, b = get_config(), get_config()
  b.rn.epochs = 1
  b.train.log_every_steps = 7
  b.train.checkpoint_every_steps = 3
  assert config_hash(a) == config_hash(b)
  b.train.epochs = 2
  assert config_hash(a) != config_hash(b)
  b = get_config()
  b.model.hidden = 64
  assert config_hash(a) != config_hash(b)


def test_ctrl_c_stops_between_batches_with_no_cages(capfd):
  """The first Ctrl-C lets the running batch finish (raised inside a compiled
  call it can crash XLA's threads at exit), then stops: no CAGEs returned."""
  model = GaitEncodingModel(hidden=4, num_joints=3)
  params = init_stacked_params(model, jax.random.key(0), 3, 5, 3)
  sequences = np.zeros((7, 5, 3, 3), np.float32)
  data = pretext.stacked_pretext_data(
      sequences, pretext.pretext_tasks('rev_rec', 'LA'), 0, 'test')
  batches = []

  def batch_done(count):
    batches.append(count)
    ctrl_c.press()              # during the first batch's bookkeeping

  with ctrl_c.commands_handler():
    with pytest.raises(KeyboardInterrupt, match='no CAGEs were written'):
      cages.compute_cages(params, model, data, batch_size=2,
                          batch_done=batch_done)
  assert batches == [2]         # stopped after the first of four batches
  assert 'stopping after the current batch of CAGEs' in capfd.readouterr().err


def test_encoding_reports_progress_per_call(caplog, monkeypatch):
  from sge_jax import progress   # pylint: disable=import-outside-toplevel
  import logging                 # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(progress, '_last_line', progress._LastLine())
  model = GaitEncodingModel(hidden=4, num_joints=3)
  params = init_stacked_params(model, jax.random.key(0), 3, 5, 3)
  sequences = np.random.default_rng(0).normal(size=(7, 5, 3, 3)).astype(np.float32)
  data = pretext.stacked_pretext_data(
      sequences, pretext.pretext_tasks('rev_rec', 'LA'), 0, 'test')
  tracker = progress.Progress('test split', 7, 'sequences', stage='encode',
                              interval_s=0.0)
  with caplog.at_level(logging.INFO, logger=progress.__name__):
    cages.compute_cages(params, model, data, batch_size=3,
                        batch_done=tracker.advance)
  # Calls of 3, 3 and 1 sequences (the last padded); the end writes no line.
  assert tracker.done == 7
  assert [m.split(' (')[0] for m in caplog.messages] == [
      '[encode] test split: 3/7 sequences', '[encode] test split: 6/7 sequences']
