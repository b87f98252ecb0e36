"""KGBD (Kinect Gait Biometry Dataset, Andersson & Araujo): raw text reader.

Raw layout (docs/method.md §2.3)::

  <raw>/kinect gait raw dataset/Person001/<any name>.txt
                               /Person002/...

``--raw`` may point at the folder holding ``kinect gait raw dataset``, at that
folder itself, or at a ``KGBD`` folder holding it. Each ``PersonNNN`` folder is
one person (id NNN); each ``.txt`` file in it is one recording (a walk in front
of a Kinect v1). Lines are ``JointName;x;y;z`` (metres), 20 lines per frame.

How a file is read (and what is assumed):

* Joint names are Kinect v1 names; they are matched to the KINECT_V1 order by
  name, tolerant of case, separators, side-first spellings and 'centre'. The
  stored joint order is therefore KINECT_V1 whatever order the file uses (the
  authors' own script kept the file order; the file order seen is noted in the
  manifest when it differs).
* Frames are delimited by names, not by counting lines, so a missing or garbage
  line cannot shift every later frame: a new frame starts at the joint the file
  starts with, or when a joint repeats.
* A frame is dropped (and counted per reason in the manifest) when a joint is
  missing, a coordinate is not a number or not finite, or a joint is exactly at
  (0, 0, 0): the file has no tracking state, and that is how the Kinect SDK
  reports a joint it did not track (the authors' script kept such frames). A
  truncated last frame is one such frame. Lines that are not
  ``name;x;y;z`` (headers, garbage) are counted and ignored.
* Files may be UTF-8 or UTF-16 (with a byte-order mark); a decimal comma
  (``0,512``) is read as a decimal point.
* If no line names a known joint, the file is read the authors' way: every 20
  parsed lines are one frame in file order, with a warning.
* An empty file, or one without a single complete frame, gives no recording
  (counted in the manifest as a skipped source).
"""

from __future__ import annotations

import collections
import dataclasses
import os
from typing import Callable, Optional

import numpy as np

from sge_jax.data import joints
from sge_jax.errors import DataError
from sge_jax.preprocess import recordings as rec_lib

RAW_FOLDER = 'kinect gait raw dataset'
LAYOUT = joints.KINECT_V1

EXPECTED_STRUCTURE = (
    f'<raw>/{RAW_FOLDER}/Person001/*.txt, <raw>/{RAW_FOLDER}/Person002/*.txt, ... '
    f'(or --raw pointing at "{RAW_FOLDER}" itself), each line "JointName;x;y;z", '
    '20 lines per frame')

_NAME_INDEX = rec_lib.joint_name_index(LAYOUT.joint_names)


@dataclasses.dataclass
class ParsedText:
  """Frames parsed from one KGBD text file.

  Attributes:
    frames: [T, 20, 3] float32, KINECT_V1 joint order, complete frames only.
    frames_read: frames found, including dropped ones.
    dropped: reason -> frames dropped.
    notes: warnings about the file.
  """
  frames: np.ndarray
  frames_read: int
  dropped: collections.Counter
  notes: list[str]


class _FrameBuilder:
  """Accumulates joint lines into frames and keeps the complete ones."""

  def __init__(self, num_joints: int):
    self.num_joints = num_joints
    self.frames: list[np.ndarray] = []
    self.dropped = collections.Counter()
    self.frames_read = 0
    self._reset()

  def _reset(self):
    self.positions = np.zeros((self.num_joints, 3), np.float32)
    self.seen: set[int] = set()
    self.bad = ''

  @property
  def started(self) -> bool:
    return bool(self.seen)

  def add(self, joint: int, values: Optional[np.ndarray], bad: str) -> None:
    self.seen.add(joint)
    if bad:
      self.bad = self.bad or bad
    else:
      self.positions[joint] = values

  def close(self, last: bool = False) -> None:
    if not self.started:
      return
    self.frames_read += 1
    if self.bad:
      self.dropped[self.bad] += 1
    elif len(self.seen) < self.num_joints:
      self.dropped['truncated last frame' if last else 'missing joints'] += 1
    elif rec_lib.joints_at_origin(self.positions):
      self.dropped[rec_lib.NOT_TRACKED_ORIGIN] += 1
    else:
      self.frames.append(self.positions)
    self._reset()


def _parse_coordinates(fields: list[str]) -> tuple[Optional[np.ndarray], str]:
  """(xyz [3] float32, '') or (None, reason) for three text fields.

  A decimal comma (``0,512``, written by some locales) is read as a point: the
  field separator is ``;``, so a comma cannot be anything else.
  """
  try:
    values = np.array([float(v.replace(',', '.')) for v in fields], np.float64)
  except ValueError:
    return None, 'non-numeric value'
  if not np.all(np.isfinite(values)):
    return None, 'non-finite value'
  return values.astype(np.float32), ''


def parse_kgbd_text(text: str) -> ParsedText:
  """Parses the content of one KGBD ``.txt`` file (see the module docstring)."""
  num_joints = LAYOUT.num_joints
  notes: list[str] = []
  lines = [line.strip() for line in text.splitlines()]
  lines = [line for line in lines if line]
  rows = []  # (joint index or None, name, coordinate fields)
  unparseable = 0
  unknown_names = collections.Counter()
  for line in lines:
    fields = line.split(';')
    if len(fields) < 4:
      unparseable += 1
      continue
    name = fields[0].strip()
    joint = _NAME_INDEX.get(rec_lib.normalize_joint_name(name))
    if joint is None:
      unknown_names[name] += 1
    rows.append((joint, name, [f.strip() for f in fields[1:4]]))
  if unparseable:
    notes.append(f'{unparseable} line(s) without "name;x;y;z" ignored')

  builder = _FrameBuilder(num_joints)
  named = [r for r in rows if r[0] is not None]
  if rows and not named:
    # No recognisable joint names: fall back to the authors' positional reading.
    notes.append(
        'no line names a known Kinect v1 joint (names seen: '
        f'{", ".join(sorted(unknown_names)[:5])}); read every {num_joints} '
        'lines as one frame in file order')
    for start in range(0, len(rows), num_joints):
      chunk = rows[start:start + num_joints]
      for offset, (_, _, fields) in enumerate(chunk):
        values, bad = _parse_coordinates(fields)
        builder.add(offset, values, bad)
      builder.close(last=start + num_joints >= len(rows))
  else:
    if unknown_names:
      notes.append(
          f'{sum(unknown_names.values())} line(s) with unknown joint names '
          f'ignored ({", ".join(sorted(unknown_names)[:5])})')
    first_joint = named[0][0] if named else None
    file_order = []
    for joint, name, fields in named:
      if builder.started and (joint == first_joint or joint in builder.seen):
        builder.close()
      if builder.frames_read == 0:
        file_order.append(joint)
      values, bad = _parse_coordinates(fields)
      builder.add(joint, values, bad)
    builder.close(last=True)
    if (len(file_order) == num_joints
        and file_order != list(range(num_joints))):
      notes.append(
          'joints are not in Kinect v1 SDK order in this file (order seen: '
          f'{", ".join(LAYOUT.joint_names[j] for j in file_order)}); stored in '
          'KINECT_V1 order')
  frames = (np.stack(builder.frames) if builder.frames
            else np.zeros((0, num_joints, 3), np.float32))
  return ParsedText(frames=frames, frames_read=builder.frames_read,
                    dropped=builder.dropped, notes=notes)


def find_raw_root(raw: str) -> str:
  """The folder that holds the ``PersonNNN`` folders.

  Raises:
    DataError: if neither ``raw`` nor a known sub-folder holds person folders.
  """
  for candidate in (raw, os.path.join(raw, RAW_FOLDER),
                    os.path.join(raw, 'KGBD', RAW_FOLDER),
                    os.path.join(raw, 'KGBD')):
    if os.path.isdir(candidate) and _person_folders(candidate):
      return candidate
  if not os.path.isdir(raw):
    raise DataError(f'KGBD raw folder {raw!r} does not exist; expected '
                    f'{EXPECTED_STRUCTURE}')
  raise DataError(f'no PersonNNN folders found under {raw!r}; expected '
                  f'{EXPECTED_STRUCTURE}')


def _person_folders(root: str) -> list[tuple[int, str]]:
  found = []
  for name in os.listdir(root):
    if (name.lower().startswith('person')
        and os.path.isdir(os.path.join(root, name))):
      person = rec_lib.person_from_name(name)
      if person is not None:
        found.append((person, name))
  return sorted(found)


def read_recordings(raw: str, manifest,
                    progress: Callable[[str], None]) -> list[rec_lib.Recording]:
  """Reads every KGBD recording under ``raw``.

  Args:
    raw: the user's ``--raw`` folder.
    manifest: a ``Manifest``; skipped files and warnings are recorded there.
    progress: called with one line per person.

  Returns:
    Recordings ordered by person, then file name (numbers in names by value);
    ``session`` is the file name, the unit of the seeded test split.
  """
  root = find_raw_root(raw)
  result = []
  folders = _person_folders(root)
  for number, (person, folder) in enumerate(folders, 1):
    folder_path = os.path.join(root, folder)
    names = sorted((n for n in os.listdir(folder_path)
                    if n.lower().endswith('.txt')
                    and os.path.isfile(os.path.join(folder_path, n))),
                   key=rec_lib.natural_key)
    if not names:
      manifest.skip_source(os.path.relpath(folder_path, raw),
                           'person folder without .txt recordings')
      continue
    kept = 0
    for name in names:
      path = os.path.join(folder_path, name)
      source = os.path.relpath(path, raw)
      try:
        parsed = parse_kgbd_text(rec_lib.read_text(path))
      except OSError as e:
        manifest.skip_source(source, f'cannot read: {e}')
        continue
      if parsed.frames_read == 0:
        manifest.skip_source(source, 'empty file (no joint lines)')
        continue
      if parsed.frames.shape[0] == 0:
        reasons = ', '.join(f'{n} {why}' for why, n in parsed.dropped.items())
        manifest.skip_source(
            source, f'no complete frame among {parsed.frames_read} ({reasons})')
        continue
      result.append(rec_lib.Recording(
          person=person, source=source, frames=parsed.frames, session=name,
          frames_read=parsed.frames_read, dropped=parsed.dropped,
          notes=parsed.notes))
      kept += 1
    progress(f'[{number}/{len(folders)}] Person {person}: {kept} of '
             f'{len(names)} recording(s) read')
  return result
