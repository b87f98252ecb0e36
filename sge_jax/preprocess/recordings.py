"""Raw recordings, their cutting into sequences, and the seeded test split.

Every raw-format reader (``kgbd``, ``biwi_ias``, ``ks20``) produces ``Recording``
objects: the frames of one recording in time order, in the standard joint layout,
plus where they came from and what was dropped while reading. This module turns
recordings into the sequences of a split (docs/method.md §2.1) and, for the datasets that
ship without a test split (KGBD, KS20), decides per person which recordings are
gallery, probe and train.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from typing import Hashable, Iterable, Mapping, Optional, Sequence

import numpy as np

from sge_jax.data import input_files
from sge_jax.data.dataset import SkeletonSplit
from sge_jax.data.windows import EDGE_FRAMES_DROPPED, cut_windows

# Sequence lengths the preprocessed layout is built for (docs/method.md §2.1).
SUPPORTED_LENGTHS = (4, 6, 8, 10)

# Gallery/probe candidates must yield a window at the longest supported length,
# so that one seed picks the same test recordings for every f.
_CANDIDATE_MIN_FRAMES = 2 * EDGE_FRAMES_DROPPED + max(SUPPORTED_LENGTHS)

# Median |coordinate| above this (metres) means the file is almost surely in
# millimetres: Kinect depth range is 0.5-8 m.
MILLIMETRE_HINT_METRES = 20.0

# Drop reason for a frame with a joint exactly at the camera origin: the Kinect
# SDKs report a not-tracked joint as (0, 0, 0), and no body part can be there.
NOT_TRACKED_ORIGIN = 'joint at (0,0,0) (not tracked)'


@dataclasses.dataclass
class Recording:
  """One recording as read from the raw files.

  Attributes:
    person: person id as the raw dataset names it (folder or file digits).
    source: where it was read from, relative to the raw root (a file, or a
      folder of per-frame files).
    frames: [T, J, 3] float32 joint positions in metres (camera frame), time
      order, joints in the standard layout (KINECT_V1 or KINECT_V2 order).
      Frames dropped while reading are already removed.
    group: the raw split it belongs to (``Training``, ``Walking``, ``Still``,
      ``TestingA``, ``TestingB``), or '' when the raw data has none (KGBD, KS20).
    session: the unit the seeded test split draws (KGBD: the file name; KS20: the
      gait-cycle setting ``gc1``/``gc2``/``gc3``, shared by all views).
    view: KS20 view name (``frontal``, ``left_diagonal``, ...), else ''.
    frames_read: frames found in the source, before any was dropped.
    dropped: reason -> number of frames dropped while reading.
    notes: warnings about this recording (also logged and put in the manifest).
  """
  person: int
  source: str
  frames: np.ndarray
  group: str = ''
  session: str = ''
  view: str = ''
  frames_read: int = 0
  dropped: collections.Counter = dataclasses.field(
      default_factory=collections.Counter)
  notes: list[str] = dataclasses.field(default_factory=list)

  @property
  def num_frames(self) -> int:
    return int(self.frames.shape[0])


@dataclasses.dataclass(frozen=True)
class CutResult:
  """What cutting one recording into f-frame windows kept and dropped.

  Attributes:
    windows: [n, f, J, 3] float32, non-overlapping, in time order.
    edge_frames: frames dropped at the two ends (at most 2 * 10).
    leftover_frames: frames after the last full window, dropped.
  """
  windows: np.ndarray
  edge_frames: int
  leftover_frames: int

  @property
  def num_windows(self) -> int:
    return int(self.windows.shape[0])


def cut_recording(frames: np.ndarray, length: int) -> CutResult:
  """Cuts [T, J, 3] frames into f-frame windows with ``cut_windows`` (docs/method.md §2.1)."""
  windows = cut_windows(frames, length)
  total = frames.shape[0]
  edge = min(total, 2 * EDGE_FRAMES_DROPPED)
  leftover = total - edge - windows.shape[0] * length
  return CutResult(windows=windows.astype(np.float32, copy=False),
                   edge_frames=int(edge), leftover_frames=int(leftover))


def assemble_split(parts: Sequence[tuple[int, int, np.ndarray]],
                   length: int, num_joints: int) -> SkeletonSplit:
  """Concatenates the windows of several recordings into one split.

  Args:
    parts: (recording id, person id, windows [n, f, J, 3]) in the order the
      sequences are to be stored; recordings with n = 0 contribute nothing.
    length: f.
    num_joints: J, used for the shape of an empty split.

  Returns:
    SkeletonSplit with sequences [N, f, J, 3] float32 in the given order,
    labels [N] (person ids) and recordings [N] (recording ids).
  """
  kept = [(rec, person, w) for rec, person, w in parts if w.shape[0]]
  if not kept:
    return SkeletonSplit(
        sequences=np.zeros((0, length, num_joints, 3), np.float32),
        labels=np.zeros((0,), np.int64), recordings=np.zeros((0,), np.int64))
  sequences = np.concatenate([w for _, _, w in kept]).astype(np.float32)
  labels = np.concatenate(
      [np.full(w.shape[0], person, np.int64) for _, person, w in kept])
  recordings = np.concatenate(
      [np.full(w.shape[0], rec, np.int64) for rec, _, w in kept])
  return SkeletonSplit(sequences=sequences, labels=labels,
                       recordings=recordings)


@dataclasses.dataclass(frozen=True)
class TestAssignment:
  """Which sessions of one person go to gallery, probe and train.

  Attributes:
    gallery: session keys in the gallery.
    probe: session keys in the probe set.
    train: the remaining session keys.
    note: why the person got fewer than the standard 2 gallery + 1 probe, or ''.
  """
  gallery: tuple[Hashable, ...]
  probe: tuple[Hashable, ...]
  train: tuple[Hashable, ...]
  note: str = ''


def assign_test_sessions(candidates: Sequence[Hashable],
                         others: Sequence[Hashable], person: int, seed: int,
                         num_gallery: int = 2) -> TestAssignment:
  """Seeded per-person split of sessions into gallery, probe and train.

  The standard split is ``num_gallery`` gallery sessions + 1 probe session, the
  rest train. A person with too few usable sessions gets what is possible, in
  this order of priority: one train session (so the person can be learnt), one
  probe, then gallery sessions. With 3 sessions this gives 1 gallery + 1 probe
  + 1 train, which is what the authors do for KGBD person 15.

  The draw uses its own generator seeded with (seed, person), so one person's
  split does not change when another person's files are missing or broken.

  Args:
    candidates: sessions that may be drawn for gallery/probe (long enough to
      give a window at every supported f); order does not matter.
    others: sessions too short to be drawn; they always go to train.
    person: person id (part of the generator's seed).
    seed: the user's seed.
    num_gallery: gallery sessions in the standard split.

  Returns:
    TestAssignment.
  """
  ordered = sorted(candidates, key=lambda s: natural_key(str(s)))
  rng = np.random.default_rng([int(seed), int(person)])
  drawn = [ordered[i] for i in rng.permutation(len(ordered))]
  # One candidate always stays in train: a short session may give no window
  # at the chosen f, and a person without training sequences cannot be learnt.
  spare = len(drawn) - 1
  num_probe = 1 if spare >= 1 else 0
  gallery_count = max(0, min(num_gallery, spare - num_probe))
  gallery = tuple(drawn[:gallery_count])
  probe = tuple(drawn[gallery_count:gallery_count + num_probe])
  train = tuple(drawn[gallery_count + num_probe:]) + tuple(
      sorted(others, key=lambda s: natural_key(str(s))))
  note = ''
  if gallery_count < num_gallery or num_probe < 1:
    too_short = f' ({len(others)} more too short to draw)' if others else ''
    note = (f'person {person} has {len(ordered)} session(s) long enough for '
            f'the test split{too_short}: {gallery_count} gallery + {num_probe} '
            f'probe + {len(train)} train instead of {num_gallery} + 1 + rest')
  return TestAssignment(gallery=gallery, probe=probe, train=train, note=note)


def is_test_candidate(recording: Recording) -> bool:
  """Whether a recording is long enough to be drawn for gallery/probe."""
  return recording.num_frames >= _CANDIDATE_MIN_FRAMES


def looks_like_millimetres(frames: np.ndarray) -> bool:
  """Whether [T, J, 3] positions are implausibly large for metres."""
  return (bool(frames.size)
          and float(np.median(np.abs(frames))) > MILLIMETRE_HINT_METRES)


def joints_at_origin(positions: np.ndarray) -> np.ndarray:
  """[..., J, 3] -> [...] bool: whether any joint is exactly (0, 0, 0)."""
  return np.any(np.all(positions == 0, axis=-1), axis=-1)


_DIGITS = re.compile(r'\d+')


def natural_key(text: str) -> tuple:
  """Sort key that orders embedded numbers by value ('f2' < 'f10')."""
  parts = re.split(r'(\d+)', text)
  return tuple((0, int(p), p) if p.isdigit() else (1, 0, p.lower())
               for p in parts)


def person_from_name(name: str) -> Optional[int]:
  """The person id in a folder name such as ``Person015``, ``015`` or ``p7``.

  Returns None unless the name holds exactly one run of digits (a name such as
  ``walk2_person3`` is ambiguous, and guessing would mislabel silently).
  """
  runs = _DIGITS.findall(name)
  return int(runs[0]) if len(runs) == 1 else None


def group_by(items: Iterable, key) -> dict:
  """Ordered dict key(item) -> list of items, keys in first-seen order."""
  groups: dict = {}
  for item in items:
    groups.setdefault(key(item), []).append(item)
  return groups


def people(recordings: Iterable[Recording]) -> list[int]:
  return sorted({r.person for r in recordings})


def count_by_person(labels: np.ndarray) -> Mapping[int, int]:
  values, counts = np.unique(labels, return_counts=True)
  return {int(v): int(c) for v, c in zip(values, counts)}


def require_regular(path: str) -> None:
  """Raises OSError when ``path`` exists but is not a regular file, so that
  it is skipped and counted like any unreadable raw file."""
  kind = input_files.not_regular(path)
  if kind:
    raise OSError(f'{path} is {kind}, not a regular file')


def read_text(path: str) -> str:
  """A raw text file's content: UTF-16 if it starts with a UTF-16 byte-order
  mark (Windows tools write those), else UTF-8 (BOM or not); undecodable bytes
  become U+FFFD and then fail number parsing, so they are counted, not hidden.

  Raises:
    OSError: the file cannot be read, or is not a regular file (a FIFO
      would wait for a writer forever).
  """
  require_regular(path)
  with open(path, 'rb') as f:
    data = f.read()
  if data.startswith((b'\xff\xfe', b'\xfe\xff')):
    return data.decode('utf-16', errors='replace')
  return data.decode('utf-8-sig', errors='replace')


def normalize_joint_name(name: str) -> str:
  """Lower case, letters and digits only, British 'centre' -> 'center'."""
  return re.sub(r'[^a-z0-9]', '', name.lower()).replace('centre', 'center')


def joint_name_index(joint_names: Sequence[str]) -> dict[str, int]:
  """Spelling-tolerant lookup: normalized name -> joint index.

  Besides the layout's own names (``ShoulderLeft``) it accepts the side first
  (``LeftShoulder``), separators and case (``shoulder_left``, ``SHOULDER-LEFT``)
  and one-letter sides (``ShoulderL``, ``LShoulder``).
  """
  index: dict[str, int] = {}
  for i, name in enumerate(joint_names):
    key = normalize_joint_name(name)
    aliases = {key}
    for side, short in (('left', 'l'), ('right', 'r'), ('center', '')):
      if key.endswith(side) and len(key) > len(side):
        base = key[:-len(side)]
        aliases.add(side + base)
        if short:
          aliases.update({base + short, short + base})
    for alias in aliases:
      index.setdefault(alias, i)
  return index
