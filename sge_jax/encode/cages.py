"""CAGEs: running trained encoders on sequences (docs/method.md §6).

C = A.H, the decoder's context vectors, per axis model [f, k]; the stacked models'
vectors are concatenated along features in model order (x, y, z for each pretext),
giving [f, M*k] per sequence: 768 for one pretext at k = 256, 2304 for
rev_rec_plus. The decoder gets the same inputs as in training (zeros by default),
so encoding is deterministic.
"""

from __future__ import annotations

import functools

import jax
import ml_collections
import numpy as np

from sge_jax import __version__
from sge_jax.config import config_hash, quirks_on
from sge_jax.data.dataset import SkeletonDataset
from sge_jax.encode.encodings import (EncodingMetadata, EncodingSet,
                                      SplitEncodings, combine_splits)
from sge_jax.models import GaitEncodingModel
from sge_jax.train import pretext

ENCODE_BATCH = 1024


def _batch_cages(params, inputs, targets, *, model: GaitEncodingModel):
  """[M, b, f, k] CAGEs of M stacked models on their [M, b, f, J] inputs.

  ``targets`` [M, b, f, J], or None unless the decoder reads them.
  """
  def one_model(model_params, model_inputs, model_targets):
    return model.apply({'params': model_params}, model_inputs, model_targets,
                       project=False)['cages']
  return jax.vmap(one_model)(params, inputs, targets)


@functools.lru_cache(maxsize=None)
def _compiled_batch_cages(model: GaitEncodingModel):
  return jax.jit(functools.partial(_batch_cages, model=model))


def compute_cages(params, model: GaitEncodingModel, data: dict[str, np.ndarray],
                  batch_size: int = ENCODE_BATCH) -> np.ndarray:
  """CAGEs of every sequence.

  Args:
    params: stacked parameters of M models.
    model: the per-axis model.
    data: ``inputs``/``targets`` [M, N, f, J] (``pretext.stacked_pretext_data``).
    batch_size: sequences per compiled call, at most (capped at the next power
      of two of N, so a small split is not padded to a large batch); the last
      call is zero-padded so one program serves all calls.

  Returns:
    [N, f, M*k] float32.
  """
  encode = _compiled_batch_cages(model)
  num_sequences = data['inputs'].shape[1]
  batch_size = min(batch_size, 1 << max(num_sequences - 1, 0).bit_length())
  padded = -(-num_sequences // batch_size) * batch_size
  padding = ((0, 0), (0, padded - num_sequences), (0, 0), (0, 0))
  inputs = np.pad(data['inputs'], padding)
  # Only teacher forcing reads the targets; otherwise they need not be sent.
  targets = (np.pad(data['targets'], padding)
             if model.decoder_input == 'shifted_target' else None)
  chunks = [np.asarray(encode(
      params, inputs[:, i:i + batch_size],
      None if targets is None else targets[:, i:i + batch_size]))
            for i in range(0, padded, batch_size)]
  cages = np.concatenate(chunks, axis=1)[:, :num_sequences]   # [M, N, f, k]
  num_models, _, length, hidden = cages.shape
  return np.ascontiguousarray(np.moveaxis(cages, 0, 2)).reshape(
      num_sequences, length, num_models * hidden)


def encode_dataset(config: ml_collections.ConfigDict, dataset: SkeletonDataset,
                   params, model: GaitEncodingModel) -> EncodingSet:
  """CAGEs of every split of ``dataset`` with the trained stacked ``params``.

  ``config.model`` describes the encoders (their pretext tasks), which may come
  from another run (transfer); ``config.seed`` fixes the sorting permutations.
  """
  tasks = pretext.pretext_tasks(config.model.pretext, config.model.attention)
  splits = []
  for name, split in dataset.splits.items():
    data = pretext.stacked_pretext_data(split.sequences, tasks, int(config.seed),
                                        name)
    recordings = (split.recordings if split.recordings is not None
                  else np.full(split.num_sequences, -1))
    splits.append((name, SplitEncodings(compute_cages(params, model, data),
                                        split.labels, split.sequences,
                                        recordings)))
  metadata = EncodingMetadata(
      dataset=dataset.name, length=dataset.length,
      attention=config.model.attention, pretext=config.model.pretext,
      hidden=int(config.model.hidden), seed=int(config.seed),
      config_hash=config_hash(config),
      model_names=tuple(pretext.model_names(tasks)),
      joint_names=tuple(dataset.joint_names) if dataset.joint_names else None,
      bones=tuple(map(tuple, dataset.bones)) if dataset.bones else None,
      sge_jax_version=__version__,
      procedure=str(config.get('procedure', 'clean')),
      quirks=tuple(quirks_on(config)))
  return combine_splits(splits, metadata)
