"""CAGEs: running trained encoders on sequences (docs/method.md §6).

C = A.H, the decoder's context vectors, per axis model [f, k]; the stacked models'
vectors are concatenated along features in model order (x, y, z for each pretext),
giving [f, M*k] per sequence: 768 for one pretext at k = 256, 2304 for
rev_rec_plus. The decoder gets the same inputs as in training (zeros by default),
so encoding is deterministic.
"""

from __future__ import annotations

import functools
from typing import Optional
import zlib

import jax
import numpy as np

from sge_jax import __version__, released
from sge_jax.config.quirks import quirks_on
from sge_jax.config.settings import RunSettings
from sge_jax.data.dataset import SkeletonDataset
from sge_jax.encode.encodings import (EncodingMetadata, EncodingSet,
                                      SplitEncodings, combine_splits)
from sge_jax.models import GaitEncodingModel
from sge_jax.progress import Progress
from sge_jax.train import pretext

ENCODE_BATCH = 1024
# The split the RN trains on (block 2 of R2 permutes only its frames).
TRAIN_SPLIT = 'train'


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
                  batch_size: int = ENCODE_BATCH,
                  progress: Optional[Progress] = None) -> np.ndarray:
  """CAGEs of every sequence.

  Args:
    params: stacked parameters of M models.
    model: the per-axis model.
    data: ``inputs``/``targets`` [M, N, f, J] (``pretext.stacked_pretext_data``).
    batch_size: sequences per compiled call, at most (capped at the next power
      of two of N, so a small split is not padded to a large batch); the last
      call is zero-padded so one program serves all calls.
    progress: optional, advanced by the sequences of every call (a line
      with the ETA at most every 10 s, ``sge_jax.progress``).

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
  chunks = []
  for i in range(0, padded, batch_size):
    chunks.append(np.asarray(encode(
        params, inputs[:, i:i + batch_size],
        None if targets is None else targets[:, i:i + batch_size])))
    if progress is not None:
      progress.advance(min(batch_size, num_sequences - i))
  cages = np.concatenate(chunks, axis=1)[:, :num_sequences]   # [M, N, f, k]
  num_models, _, length, hidden = cages.shape
  return np.ascontiguousarray(np.moveaxis(cages, 0, 2)).reshape(
      num_sequences, length, num_models * hidden)


def released_plus_cages(params, model: GaitEncodingModel, sequences: np.ndarray,
                        permute: bool, seed: int, stream: str) -> np.ndarray:
  """Quirk R2: rev_rec_plus CAGEs as the released code builds them.

  Only the rev_rec models (the first three stacked models) are used, three
  times: block 0 on the sequences, block 1 the same again, block 2 on the
  sequences with their frames permuted per sequence and axis when ``permute``
  (the training split) and unchanged otherwise. Columns are ordered per axis,
  x0 x1 x2 y0 y1 y2 z0 z1 z2, as the released per-axis concatenation.

  Args:
    params: stacked parameters of the 9 rev_rec_plus models.
    model: the per-axis model.
    sequences: [N, f, J, 3].
    permute: permute the frames for block 2 (training split only).
    seed: root seed (the block-2 permutations).
    stream: split name.

  Returns:
    [N, f, 9 k] float32.
  """
  rev_rec = (pretext.PretextTask('rev_rec', 'LA'),)
  rev_rec_params = jax.tree.map(lambda p: p[:len(pretext.AXES)], params)

  def rev_rec_cages(inputs):
    data = pretext.stacked_pretext_data(inputs, rev_rec, seed, stream)
    cages = compute_cages(rev_rec_params, model, data)
    return cages.reshape(cages.shape[0], cages.shape[1], len(pretext.AXES), -1)

  block0 = rev_rec_cages(sequences)
  if permute:
    rng = np.random.default_rng([seed, zlib.crc32(f'{stream}/plus'.encode())])
    block2 = rev_rec_cages(released.permute_frames_per_axis(sequences, rng)[0])
  else:
    block2 = block0
  blocks = np.stack([block0, block0, block2], axis=3)   # [N, f, axis, block, k]
  return blocks.reshape(blocks.shape[0], blocks.shape[1], -1)


def released_plus_names() -> tuple[str, ...]:
  """Column blocks of ``released_plus_cages``, in order."""
  return tuple(f'rev_rec/{axis} (block {block})' for axis in pretext.AXES
               for block in range(3))


def encode_dataset(run: RunSettings, dataset: SkeletonDataset,
                   params, model: GaitEncodingModel) -> EncodingSet:
  """CAGEs of every split of ``dataset`` with the trained stacked ``params``.

  ``run.model`` describes the encoders (their pretext tasks), which may come
  from another run (transfer); ``run.seed`` fixes the sorting permutations.
  ``run.quirks`` may switch on R2 (rev_rec_plus from the rev_rec weights)
  and R10 (sorting permutations redrawn for encoding).
  """
  quirks = run.quirks
  tasks = pretext.pretext_tasks(run.model.pretext, run.model.attention, quirks)
  plus_from_rev_rec = (run.model.pretext == 'rev_rec_plus'
                       and quirks.plus_from_rev_rec)
  seed = run.seed
  splits = []
  for name, split in dataset.splits.items():
    if plus_from_rev_rec:
      cages = released_plus_cages(params, model, split.sequences,
                                  name == TRAIN_SPLIT, seed, name)
    else:
      # R10: a stream of its own, so the encoded permutations are not the trained ones.
      stream = f'{name}/encode' if quirks.redrawn_sorting else name
      cages = compute_cages(params, model, pretext.stacked_pretext_data(
          split.sequences, tasks, seed, stream), progress=Progress(
              f'{name} split', split.num_sequences, 'sequences',
              stage='encode'))
    recordings = (split.recordings if split.recordings is not None
                  else np.full(split.num_sequences, -1))
    splits.append((name, SplitEncodings(cages, split.labels, split.sequences,
                                        recordings)))
  metadata = EncodingMetadata(
      dataset=dataset.name, length=dataset.length,
      attention=run.model.attention, pretext=run.model.pretext,
      hidden=run.model.hidden, seed=seed, config_hash=run.config_hash,
      model_names=(released_plus_names() if plus_from_rev_rec
                   else tuple(pretext.model_names(tasks))),
      joint_names=tuple(dataset.joint_names) if dataset.joint_names else None,
      bones=tuple(map(tuple, dataset.bones)) if dataset.bones else None,
      sge_jax_version=__version__,
      procedure=run.procedure, quirks=tuple(quirks_on(run, dataset.name)),
      data_source=dataset.source)
  return combine_splits(splits, metadata)
