"""Query -> gallery feature distances in bounded blocks (docs/method.md §7).

Every retrieval metric and nearest-neighbour decision reads its distances from
``iter_pairwise_distances``: float64, in query blocks of at most
``_BLOCK_ELEMENTS`` entries of the [block, G] distance matrix, so nothing ever
holds the full [Q, G] matrix. One block feeds every consumer of the same
(query, gallery) pair (``sge_jax.evaluate.retrieval``), piece by piece while
it is in the CPU cache (``chunk_rows``).
"""

from __future__ import annotations

from typing import Iterator, Optional

import numpy as np

from sge_jax.config import DISTANCES

METRICS = DISTANCES

# Entries of one [block_rows, G] float64 distance block (2**22 -> 32 MiB).
_BLOCK_ELEMENTS = 2**22

# Query rows per piece that a consumer handles while it is in the CPU cache
# (``iter_pairwise_distances(chunk_rows=...)``): 4 rows of a 20,000-sample
# gallery are 640 KB per float64 array.
CACHE_ROWS = 4

# Norms below this are treated as zero vectors by the cosine distance.
_COSINE_MIN_NORM = 1e-12


def check_features(query, gallery) -> tuple[np.ndarray, np.ndarray]:
  """``query`` [Q, D] and ``gallery`` [G, D] as float64, checked (ValueError:
  wrong shapes, an empty gallery, NaN or infinite values)."""
  query = np.asarray(query, dtype=np.float64)
  gallery = np.asarray(gallery, dtype=np.float64)
  if query.ndim != 2 or gallery.ndim != 2 or query.shape[1] != gallery.shape[1]:
    raise ValueError(
        f'query and gallery must be [Q, D] and [G, D], got {query.shape} and '
        f'{gallery.shape}')
  if gallery.shape[0] == 0:
    raise ValueError('the gallery is empty')
  if not (np.all(np.isfinite(query)) and np.all(np.isfinite(gallery))):
    raise ValueError('features contain NaN or infinite values')
  return query, gallery


def check_metric(metric: str) -> None:
  if metric not in METRICS:
    raise ValueError(f'metric must be one of {METRICS}, got {metric!r}')


def block_rows(num_columns: int) -> int:
  """Query rows per distance block for a gallery of ``num_columns``."""
  return max(1, _BLOCK_ELEMENTS // max(num_columns, 1))


def iter_pairwise_distances(query, gallery, metric: str = 'euclidean',
                            chunk_rows: Optional[int] = None
                            ) -> Iterator[tuple[int, np.ndarray]]:
  """Query-block-wise distances, for consumers that never need all of [Q, G].

  Args:
    query: [Q, D] features.
    gallery: [G, D] features.
    metric: ``'euclidean'`` or ``'cosine'`` (see ``pairwise_distances``).
    chunk_rows: None: yield every block whole. Else the blocks are yielded in
      pieces of at most this many rows, each finished just before it is
      yielded, so that a consumer reads it while it is still in the CPU cache
      (the products q.g are computed per block either way, so the values do
      not depend on it).

  Yields:
    (start, block): ``block`` is the float64 [b, G] distance matrix of query rows
    ``start:start + b``; blocks come in order and cover all Q rows. The
    consumer may modify a block; it must not keep one past the next (a piece
    is a view into its block's array).
  """
  check_metric(metric)
  query, gallery = check_features(query, gallery)
  if metric == 'euclidean':
    # Distances are translation invariant; centring on the gallery mean keeps the
    # norms small, which limits cancellation in |q|^2 + |g|^2 - 2 q.g.
    centre = gallery.mean(axis=0)
    query = query - centre
    gallery = gallery - centre
    gallery_sq_norms = np.einsum('gd,gd->g', gallery, gallery)
  else:
    gallery = gallery / np.maximum(
        np.linalg.norm(gallery, axis=1, keepdims=True), _COSINE_MIN_NORM)
    query = query / np.maximum(
        np.linalg.norm(query, axis=1, keepdims=True), _COSINE_MIN_NORM)
  rows = block_rows(gallery.shape[0])
  piece_rows = rows if chunk_rows is None else max(1, int(chunk_rows))
  # |q|^2 + |g|^2 of one piece, one buffer for all.
  norm_sums = np.empty((min(piece_rows, rows, query.shape[0]),
                        gallery.shape[0]))
  for start in range(0, query.shape[0], rows):
    block = query[start:start + rows]
    if metric == 'euclidean':
      products = (2.0 * block) @ gallery.T
      query_sq_norms = np.einsum('qd,qd->q', block, block)
    else:
      products = block @ gallery.T
    for first in range(0, block.shape[0], piece_rows):
      piece = products[first:first + piece_rows]
      # In place, operation for operation what (|q|^2 + |g|^2) - (2q).g and
      # 1 - q.g compute with temporaries: the same float64 values.
      if metric == 'euclidean':
        sums = np.add(query_sq_norms[first:first + piece_rows, None],
                      gallery_sq_norms[None, :],
                      out=norm_sums[:piece.shape[0]])
        np.subtract(sums, piece, out=piece)
        np.maximum(piece, 0.0, out=piece)
        np.sqrt(piece, out=piece)
      else:
        np.subtract(1.0, piece, out=piece)
        np.clip(piece, 0.0, 2.0, out=piece)
      if chunk_rows is not None:
        yield start + first, piece
    if chunk_rows is None:
      yield start, products


def pairwise_distances(query, gallery, metric: str = 'euclidean') -> np.ndarray:
  """Distances between every query and every gallery vector.

  Args:
    query: [Q, D] features.
    gallery: [G, D] features.
    metric: ``'euclidean'`` (L2 distance) or ``'cosine'`` (1 - cosine similarity,
      in [0, 2]; an all-zero vector has similarity 0 to everything).

  Returns:
    [Q, G] float64 distances, >= 0. Euclidean distances use the expansion
    |q|^2 + |g|^2 - 2 q.g after centring on the gallery mean, with negative
    rounding residue clamped to 0 before the square root; the distance of a
    vector to itself is therefore ~1e-8 * its spread, not necessarily exactly 0.
  """
  query_rows = np.shape(query)[0]
  distances = np.empty((query_rows, np.shape(gallery)[0]), dtype=np.float64)
  for start, block in iter_pairwise_distances(query, gallery, metric):
    distances[start:start + block.shape[0]] = block
  return distances
