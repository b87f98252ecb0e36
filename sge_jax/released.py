"""Index bookkeeping of the authors' released code (the "released procedure").

Pure NumPy: no JAX, no config. Each function reproduces one behaviour of the
authors' TF1 code (GitHub ``Kali-Hac/Locality-Awareness-SGE``) that
``procedure='released'`` uses: the RN rows of R1/R3/R5, R7's BIWI rows, R8's
normalisation, R2/R10's frame permutations, R11's CME match and R12's check.
Reference forms the tests check the pipeline against (R4's batches, R6's
epoch rules, the closed-form sample counts, ...) are in
``tests/fixtures/released_reference.py``. The behaviours and the disagreements
with the authors' list are in ``docs/released_procedure.md``.

Line references ``train.py:N`` are to ``train.py`` at commit ``1f11472`` of that
repository (counted there; they agree with the line numbers of AUTHORS_CODE.md
at every anchor checked). References into ``CVE-CASIA-B.py`` and
``CME-CASIA-B.py`` are approximate (``~``) and named by function.

Conventions:

* ``labels``: one person label per stored sequence, in stored order, [N].
* A person's *rows* are the stored indices of their sequences. The authors read
  them from an ``ids`` dict (person -> list of row indices); this module builds
  that dict from ``labels`` with each person's rows in ascending stored order
  (``person_rows``), or takes the dict as it is (``*_from_ids`` functions).
* ``B`` is the batch size: 128 for CAGE extraction everywhere (train.py:16); the
  RN and its test scoring use the same 128 except CASIA-B CVE, whose
  ``encoder_classify_union_directly`` multiplies the global batch size by 10
  (1280) before training and scoring the RN.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from sge_jax.errors import DataError

EXTRACTION_BATCH = 128  # train.py:16 (``batch_size = 128``)
CASIA_B_CVE_RN_BATCH = 1280  # CVE-CASIA-B.py, encoder_classify_union_directly: batch_size *= 10


# ----------------------------------------------------------------------------
# R1 / R3: per-person extraction in batches of B.
# ----------------------------------------------------------------------------

def person_rows(labels: Sequence[Hashable] | np.ndarray) -> dict[Hashable, list[int]]:
  """The authors' ``ids`` dict built from per-sequence labels.

  Args:
    labels: [N] person label of each stored sequence, in stored order.

  Returns:
    person -> list of that person's row indices, ascending (stored order).
  """
  rows: dict[Hashable, list[int]] = {}
  for index, label in enumerate(np.asarray(labels).tolist()):
    rows.setdefault(label, []).append(index)
  return rows


def released_extraction_order_from_ids(
    ids: Mapping[Hashable, Sequence[int]],
    batch_size: int = EXTRACTION_BATCH) -> tuple[np.ndarray, np.ndarray]:
  """R1: the rows the encoder is fed, in order, for one split (train.py:1201-1216).

  Persons are visited in ``sorted`` order of their key (train.py:1201-1202,
  ``sorted(ids.items(), key=lambda item: item[0])``); a person with no rows is
  skipped (train.py:1208-1210). A person with 0 < n < B rows is padded to B
  with copies of their FIRST row ``v[0]``, appended after the n originals
  (train.py:1211-1212). Then ``n // B`` batches of B consecutive list entries
  are encoded (train.py:1214-1216): a person with n >= B keeps their first
  ``B * (n // B)`` rows in list order, the tail is dropped.

  This is the order of the RN training rows before the one-off shuffle of R4
  (train side keeps the copies) and, in ``rev_rec_plus``, also of the test rows
  (R3, ``rev_rec_plus_test_order``).

  Args:
    ids: person -> list of row indices (the authors' ``ids_*.npy`` dict).
    batch_size: B.

  Returns:
    indices: [M] int64 row indices into the split's stored sequences.
    is_padding: [M] bool, True for the appended copies of a person's first row.
  """
  if batch_size < 1:
    raise ValueError(f'batch_size must be positive, got {batch_size}')
  indices: list[int] = []
  padding: list[bool] = []
  for _, rows in sorted(ids.items(), key=lambda item: item[0]):
    rows = list(rows)
    n = len(rows)
    if n == 0:
      continue
    if n < batch_size:
      kept = rows + [rows[0]] * (batch_size - n)
      flags = [False] * n + [True] * (batch_size - n)
    else:
      kept = rows[:batch_size * (n // batch_size)]
      flags = [False] * len(kept)
    indices.extend(kept)
    padding.extend(flags)
  return np.asarray(indices, dtype=np.int64), np.asarray(padding, dtype=bool)


def released_extraction_order(
    labels: Sequence[Hashable] | np.ndarray,
    batch_size: int = EXTRACTION_BATCH) -> tuple[np.ndarray, np.ndarray]:
  """R1 train side: ``released_extraction_order_from_ids(person_rows(labels))``.

  Args:
    labels: [N] person label of each stored sequence, in stored order.
    batch_size: B (128).

  Returns:
    indices: [M] row indices (copies included), M = sum_p train_sequences_per_person(n_p).
    is_padding: [M] bool, True for copies of the person's first sequence.
  """
  return released_extraction_order_from_ids(person_rows(labels), batch_size)


def released_test_order_from_ids(ids: Mapping[Hashable, Sequence[int]],
                                 batch_size: int = EXTRACTION_BATCH) -> np.ndarray:
  """R1 test side (rev_rec, prediction, sorting): copies cut off, truncation kept.

  The test loop pads exactly like the train loop but remembers
  ``flag = B - n`` and keeps only the first ``B - flag`` encoder outputs
  (train.py:1328-1334, 1386-1387; labels: train.py:1437-1441), i.e. the n
  originals. Persons with n >= B are still truncated to ``B * (n // B)``.

  Returns:
    [M'] int64 row indices, M' = sum_p test_sequences_per_person(n_p).
  """
  indices, is_padding = released_extraction_order_from_ids(ids, batch_size)
  return indices[~is_padding]


def released_test_order(labels: Sequence[Hashable] | np.ndarray,
                        batch_size: int = EXTRACTION_BATCH) -> np.ndarray:
  """R1 test side from labels: ``released_test_order_from_ids(person_rows(labels))``."""
  return released_test_order_from_ids(person_rows(labels), batch_size)


def rev_rec_plus_test_order(
    labels: Sequence[Hashable] | np.ndarray,
    batch_size: int = EXTRACTION_BATCH) -> tuple[np.ndarray, np.ndarray]:
  """R3: in ``rev_rec_plus`` the TEST rows keep the padding copies.

  The first pass of the ``rev_rec_plus`` branch (train.py:1571-2132) extends the
  id lists in place; the identical second pass (train.py:2133-2694) and the
  blocks 1 and 2 (train.py:2695-3253, 3254-3813) then see B entries for every
  small person, compute ``flag = 0`` and keep the copies. The second pass
  overwrites the first pass's outputs, so every block's test set is the full
  padded order -- the same as the train-side order of R1.

  Returns:
    indices, is_padding: as ``released_extraction_order``.
  """
  return released_extraction_order(labels, batch_size)


# ----------------------------------------------------------------------------
# R5: test scoring in full batches.
# ----------------------------------------------------------------------------

def scored_test_rows(num_rows: int, batch_size: int = EXTRACTION_BATCH) -> np.ndarray:
  """R5: which test rows the RN scores.

  Training-time scoring: train.py:4036-4047 (padding, full-batch loop);
  ``evaluate_reid`` scores the saved ``val_X.npy`` in the same full batches
  (train.py:4484-4486 SC, 4518-4519 AP, via train.py:3914-3922).

  Fewer than B rows: the rows are padded with copies of row 0 up to B (the
  padding is permanent from the first epoch on, and saved in ``val_X.npy``),
  and that one batch is scored. Otherwise only the ``N // B`` full batches are
  scored; the last ``N mod B`` rows are dropped. "Rows" are the rows as the RN
  sees them: sequences in SC (after the one-off test permutation,
  ``sc_scored_sequences``), frames in AP (stored order, ``ap_scored_windows``).

  Args:
    num_rows: N, the number of test rows (> 0; the authors' code fails on 0).
    batch_size: B (1280 for CASIA-B CVE).

  Returns:
    [S] int64 indices into the N test rows, S = scored_row_count(N, B); when
    N < B the last B - N entries are 0 (the copies of row 0).
  """
  if num_rows <= 0:
    raise ValueError(f'the released code needs at least one test row, got {num_rows}')
  if num_rows < batch_size:
    return np.concatenate([np.arange(num_rows, dtype=np.int64),
                           np.zeros(batch_size - num_rows, dtype=np.int64)])
  return np.arange(batch_size * (num_rows // batch_size), dtype=np.int64)


def sc_scored_sequences(test_permutation: np.ndarray,
                        batch_size: int = EXTRACTION_BATCH) -> np.ndarray:
  """R5, SC manner: the test sequences scored, in scoring order.

  The test rows (sequences) are permuted once by ``test_permutation``
  (train.py:3837-3854; drawn in the first ``encoder_classify`` call, reused for
  y and z), then ``scored_test_rows`` applies.

  Args:
    test_permutation: [N] the permutation of the N test sequences.
    batch_size: B.

  Returns:
    [S] indices into the N test sequences (in R1 test order); repeated entries
    are the copies of the first permuted row when N < B.
  """
  test_permutation = np.asarray(test_permutation, dtype=np.int64)
  return test_permutation[scored_test_rows(test_permutation.shape[0], batch_size)]


def ap_scored_windows_from_frame_labels(
    frame_labels: Sequence[Hashable] | np.ndarray, frames: int,
    batch_size: int = EXTRACTION_BATCH) -> tuple[np.ndarray, np.ndarray]:
  """R5, AP manner, on frame rows: the windows of f scored frames that count.

  After ``scored_test_rows`` on the frame rows, windows ``[k f, (k + 1) f)`` of
  the scored rows for ``k < len(scored) // f`` are formed (a trailing partial
  window is dropped); a window counts as one sequence only if its f frame labels
  are all equal (train.py:4068-4080 at training time, 4546-4569 in
  ``evaluate_reid``).

  Args:
    frame_labels: [R] person label of each test frame row, in stored order.
    frames: f.
    batch_size: B.

  Returns:
    windows: [K, f] int64 indices into the R frame rows (0 repeated for the
      copies of row 0 when R < B).
    labels: [K] the person label of each counted window.
  """
  frame_labels = np.asarray(frame_labels)
  scored = scored_test_rows(frame_labels.shape[0], batch_size)
  count = scored.shape[0] // frames
  windows = scored[:count * frames].reshape(count, frames)
  window_labels = frame_labels[windows]
  uniform = np.all(window_labels == window_labels[:, :1], axis=1)
  return windows[uniform], window_labels[uniform, 0]


def ap_scored_windows(sequence_labels: Sequence[Hashable] | np.ndarray, frames: int,
                      batch_size: int = EXTRACTION_BATCH) -> tuple[np.ndarray, np.ndarray]:
  """R5, AP manner: the test sequences scored, regrouped from the scored frames.

  The test frames stay in stored order (no test permutation in AP); sequence i
  is frame rows ``i f .. i f + f - 1``. Since every sequence has exactly f rows
  and padding starts at row ``f N``, every window is one stored sequence or f
  copies of row 0, so the label check of
  ``ap_scored_windows_from_frame_labels`` never rejects a window here. With
  ``f N >= B`` the first ``floor(B floor(f N / B) / f)`` sequences are scored
  and the rest dropped. With ``f N < B`` all N sequences are scored plus
  ``floor(B/f) - N`` windows of copies of frame row 0 (frame 0 of the first
  test sequence), which DO count, as extra sequences of that person.

  Args:
    sequence_labels: [N] person label of each test sequence, in R1 test order.
    frames: f.
    batch_size: B.

  Returns:
    windows: [K, f] int64 frame-row indices (sequence i's frame j is row i f + j).
    labels: [K] the person label of each counted window.
  """
  return ap_scored_windows_from_frame_labels(
      np.repeat(np.asarray(sequence_labels), frames), frames, batch_size)


# ----------------------------------------------------------------------------
# R7: BIWI encoder training rows.
# ----------------------------------------------------------------------------

def biwi_encoder_rows(num_sequences: int) -> np.ndarray:
  """R7: the stored BIWI training rows the gait encoders train on (train.py:371).

  The authors' slice stops at minus the length floor-divided by three; unary
  minus binds tighter than ``//``, so the stop is ``(-n) // 3 = -ceil(n / 3)``:
  the encoder trains on the first ``n - ceil(n/3) = floor(2n/3)`` rows, NOT on
  ``n - n // 3`` (what a stop of ``-(n // 3)`` would give, and which is empty
  when ``n // 3 == 0``). The RN still uses all n rows (R1 applies there).

  Args:
    num_sequences: n, the number of stored BIWI training sequences.

  Returns:
    [floor(2n/3)] int64 row indices 0, 1, ...
  """
  return np.arange((2 * num_sequences) // 3, dtype=np.int64)


# ----------------------------------------------------------------------------
# R8: CASIA-B joint-0 normalisation.
# ----------------------------------------------------------------------------

def normalize_to_root_joint(sequences: np.ndarray) -> np.ndarray:
  """R8: subtract each frame's joint 0 from all its joints, per axis.

  The CASIA-B scripts (``--norm 1``, the default) do, per axis array
  [N, f, J]: ``x - tile(x[:, :, 0:1], J)`` for the encoder's training inputs and
  targets (CVE-CASIA-B.py ~564-569, ``train``) and for gallery and probe inputs
  (CVE-CASIA-B.py ~1086-1111 / CME-CASIA-B.py, ``encoder_classify``).

  Args:
    sequences: [..., J, 3] (e.g. [N, f, J, 3]) coordinates, joint axis second to last.

  Returns:
    same shape; joint 0 is exactly 0 in every frame.
  """
  sequences = np.asarray(sequences)
  return sequences - sequences[..., :1, :]


# ----------------------------------------------------------------------------
# R10: frame permutations; R11: CME matching.
# ----------------------------------------------------------------------------

def permute_frames_per_axis(sequences: np.ndarray,
                            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """R10 / R2 block 2: an independent random frame order per sequence and per axis.

  The authors permute the frames of every stored sequence with a fresh
  ``np.random.permutation(f)``, separately for the x, y and z arrays
  (train.py:268-273 and the other ``get_data_*`` for encoder training,
  train.py:1029-1033 for CAGE extraction; block 2 of ``rev_rec_plus``,
  train.py:3255-3258, training split only). Unseeded there; seeded here.

  Args:
    sequences: [N, f, J, 3].
    rng: NumPy generator.

  Returns:
    permuted: [N, f, J, 3] with ``permuted[i, t, :, a] = sequences[i, perm[a, i, t], :, a]``.
    perm: [3, N, f] the frame orders, axis-major.
  """
  sequences = np.asarray(sequences)
  n, f = sequences.shape[:2]
  perm = np.stack([np.stack([rng.permutation(f) for _ in range(n)]) if n else
                   np.zeros((0, f), dtype=np.int64) for _ in range(sequences.shape[-1])])
  permuted = np.empty_like(sequences)
  for axis in range(sequences.shape[-1]):
    permuted[..., axis] = np.take_along_axis(
        sequences[..., axis], perm[axis][:, :, None], axis=1)
  return permuted, perm


def cme_match_from_distances(distances: np.ndarray, same_condition: bool) -> np.ndarray:
  """R11 on a [P, G] probe-to-gallery distance matrix: nearest, or second nearest
  for an equal condition (ties by gallery order). Returns [P] gallery indices."""
  order = np.argsort(np.asarray(distances), axis=1, kind='stable')
  return order[:, 1] if same_condition else order[:, 0]


# ----------------------------------------------------------------------------
# R12: the same people in train and test.
# ----------------------------------------------------------------------------

def require_equal_person_sets(labels_by_split: Mapping[str, np.ndarray]) -> None:
  """R12 in released mode: stops unless every test split has the train split's people.

  The released RN has one output per TEST id and binarises train and test ids
  separately (train.py:3946-3951), so it runs only when the counts agree and
  then pairs the i-th smallest train id with the i-th smallest test id; with
  different sets its scores would be meaningless.

  Args:
    labels_by_split: split name -> [N] person ids ('train' and the test splits).

  Raises:
    DataError: naming the split, the people that differ and the fix.
  """
  if 'train' not in labels_by_split:
    return
  train = set(np.unique(labels_by_split['train']).tolist())
  for name, labels in labels_by_split.items():
    if name == 'train':
      continue
    test = set(np.unique(labels).tolist())
    if test != train:
      raise DataError(
          f'procedure released (quirks.equal_id_counts, R12): test split {name!r} '
          f'has other people than train (only in test: {sorted(test - train)}, '
          f'only in train: {sorted(train - test)}); the released RN has one '
          'class per test id and matches ids by rank, so it cannot score this. '
          'Use --config.quirks.equal_id_counts=False or the clean procedure.')
