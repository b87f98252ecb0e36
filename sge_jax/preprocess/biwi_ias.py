"""BIWI RGBD-ID and IAS-Lab RGBD-ID: per-frame ``*skel.txt`` reader.

Raw layout (docs/method.md §2.3)::

  BIWI: <raw>/Training/<person>/...skel.txt
        <raw>/Testing/Walking/<person>/...skel.txt
        <raw>/Testing/Still/<person>/...skel.txt
  IAS:  <raw>/Training/<person>/...skel.txt
        <raw>/TestingA/<person>/...skel.txt
        <raw>/TestingB/<person>/...skel.txt

``--raw`` may also point at a folder holding ``BIWI/`` (or ``IAS/``). Folder
names are matched case-insensitively. ``Training`` and at least one test folder
must exist; a missing test folder is a warning.

* Person: the folder directly under the split folder, its one run of digits
  (``003`` -> 3, ``person_03`` -> 3). The same digits name the same person in
  training and test folders. A folder with no or several digit runs is skipped
  with a warning rather than guessed.
* Recording: every folder (the person folder itself, or sub-folders of it) that
  directly holds ``*skel.txt`` files. Frames are those files ordered by the
  numbers in their names (by value, so unpadded numbers sort correctly; for
  zero-padded names this is the authors' plain sort).
* Frame file: CSV, one joint per line ``label, x, y, z, u, v, trackingState,
  qualityFlag`` (x, y, z in metres). The first 20 lines are the 20 Kinect v1
  joints; further lines are ignored and counted (the authors' BIWI script reads
  only the first 20 lines too). When the labels are the joint indices 0..19 or
  1..20 in any order, joints are placed by label; otherwise by line order.
* **Tracking state**: a frame is dropped when *any* of its joints has tracking
  state 0 (Kinect "not tracked"). docs/method.md §2.3 says "skip frames whose tracking
  state is 0"; the state is per joint, and the authors' scripts drop the frame
  at the first joint with state 0. A not-tracked joint has no measured position,
  so keeping the frame would put an invented point into the sequence. Inferred
  joints (state 1) are kept, as the authors do. A joint exactly at (0, 0, 0)
  is treated as not tracked too (the SDK's value for it).
* Other dropped frames, each counted per reason in the manifest: empty file,
  fewer than 20 joint lines, a line with fewer than 7 fields, a non-numeric or
  non-finite value. The remaining frames are joined in order (as the authors
  do), so a window may span a dropped frame; the manifest counts the drops.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from typing import Callable, Optional, Sequence

import numpy as np

from sge_jax.data import joints
from sge_jax.errors import DataError
from sge_jax.preprocess import recordings as rec_lib

LAYOUT = joints.KINECT_V1
FRAME_SUFFIX = 'skel.txt'

# Raw split name -> path of its folder under the raw root.
BIWI_GROUPS = (('Training', ('Training',)),
               ('Walking', ('Testing', 'Walking')),
               ('Still', ('Testing', 'Still')))
IAS_GROUPS = (('Training', ('Training',)),
              ('TestingA', ('TestingA',)),
              ('TestingB', ('TestingB',)))

_STATE_FIELD = 6
_MIN_FIELDS = 7


@dataclasses.dataclass(frozen=True)
class ParsedFrame:
  """One ``*skel.txt`` frame file.

  Attributes:
    positions: [J, 3] float32 in layout order, or None if the frame is dropped.
    reason: why it was dropped ('' if kept).
    extra_lines: lines after the first J, ignored.
    by_label: whether joints were placed by their labels (else line order).
  """
  positions: Optional[np.ndarray]
  reason: str = ''
  extra_lines: int = 0
  by_label: bool = False


def _joint_slots(labels: Sequence[float], num_joints: int) -> Optional[list]:
  """Joint index of each line from its label, or None to use line order."""
  if not all(float(v).is_integer() for v in labels):
    return None
  ints = [int(v) for v in labels]
  if sorted(ints) == list(range(num_joints)):
    return ints
  if sorted(ints) == list(range(1, num_joints + 1)):
    return [v - 1 for v in ints]
  return None


def parse_skel_frame(text: str, num_joints: int = LAYOUT.num_joints,
                     state_field: Optional[int] = _STATE_FIELD,
                     min_fields: int = _MIN_FIELDS) -> ParsedFrame:
  """Parses one per-frame skeleton CSV (see the module docstring).

  Args:
    text: file content.
    num_joints: J; the first J non-empty lines are the joints.
    state_field: column of the tracking state (frames with a 0 are dropped),
      or None when the format has none.
    min_fields: fields a joint line must have.

  Returns:
    ParsedFrame.
  """
  lines = [line.strip() for line in text.splitlines()]
  lines = [line for line in lines if line]
  if not lines:
    return ParsedFrame(None, 'empty frame file')
  extra = max(0, len(lines) - num_joints)
  lines = lines[:num_joints]
  if len(lines) < num_joints:
    return ParsedFrame(None, 'missing joints', extra)
  rows = [[f.strip() for f in line.split(',')] for line in lines]
  if any(len(row) < min_fields for row in rows):
    return ParsedFrame(None, 'malformed line', extra)
  try:
    labels = [float(row[0]) for row in rows]
    values = np.array([[float(v) for v in row[1:4]] for row in rows])
    states = ([float(row[state_field]) for row in rows]
              if state_field is not None else [])
  except ValueError:
    return ParsedFrame(None, 'non-numeric value', extra)
  if not np.all(np.isfinite(values)):
    return ParsedFrame(None, 'non-finite value', extra)
  if any(state == 0 for state in states):
    return ParsedFrame(None, 'tracking state 0', extra)
  if rec_lib.joints_at_origin(values):
    return ParsedFrame(None, rec_lib.NOT_TRACKED_ORIGIN, extra)
  slots = _joint_slots(labels, num_joints)
  positions = np.zeros((num_joints, 3), np.float32)
  positions[slots if slots is not None else slice(None)] = values
  return ParsedFrame(positions, '', extra, slots is not None)


def read_frame_folder(folder: str, raw: str, person: int, group: str,
                      manifest, parse=parse_skel_frame,
                      suffix: str = FRAME_SUFFIX,
                      num_joints: int = LAYOUT.num_joints
                      ) -> Optional[rec_lib.Recording]:
  """Reads a folder of per-frame files as one recording.

  Returns:
    The recording, or None (recorded in the manifest) when no frame is usable.
  """
  source = os.path.relpath(folder, raw)
  names = sorted((n for n in os.listdir(folder)
                  if n.lower().endswith(suffix)
                  and os.path.isfile(os.path.join(folder, n))),
                 key=rec_lib.natural_key)
  frames = []
  dropped = collections.Counter()
  extra_files = 0
  label_files = 0
  for name in names:
    try:
      parsed = parse(rec_lib.read_text(os.path.join(folder, name)))
    except OSError:
      dropped['unreadable file'] += 1
      continue
    extra_files += parsed.extra_lines > 0
    if parsed.positions is None:
      dropped[parsed.reason] += 1
      continue
    label_files += parsed.by_label
    frames.append(parsed.positions)
  notes = []
  if extra_files:
    notes.append(f'{extra_files} frame file(s) have more than {num_joints} '
                 f'lines; only the first {num_joints} were used')
  if frames and label_files < len(frames):
    notes.append(f'{len(frames) - label_files} of {len(frames)} frames have '
                 'labels that are not joint indices; joints placed by line '
                 'order there')
  if not frames:
    reasons = ', '.join(f'{n} {why}' for why, n in sorted(dropped.items()))
    manifest.skip_source(
        source, f'no usable frame among {len(names)} frame file(s)'
        + (f' ({reasons})' if reasons else ''))
    return None
  return rec_lib.Recording(
      person=person, source=source, frames=np.stack(frames), group=group,
      frames_read=len(names), dropped=dropped, notes=notes)


def find_child(parent: str, name: str) -> Optional[str]:
  """``parent/name`` matched case-insensitively, or None."""
  if not os.path.isdir(parent):
    return None
  exact = os.path.join(parent, name)
  if os.path.isdir(exact):
    return exact
  for entry in sorted(os.listdir(parent)):
    if (entry.lower() == name.lower()
        and os.path.isdir(os.path.join(parent, entry))):
      return os.path.join(parent, entry)
  return None


def find_path(parent: str, parts: Sequence[str]) -> Optional[str]:
  for part in parts:
    parent = find_child(parent, part)
    if parent is None:
      return None
  return parent


def expected_structure(dataset: str, groups) -> str:
  folders = ', '.join('<raw>/' + '/'.join(parts) + '/<person>/*skel.txt'
                      for _, parts in groups)
  return f'{folders} (or --raw pointing at a folder holding {dataset}/)'


def find_group_folders(raw: str, dataset: str, groups, manifest
                       ) -> dict[str, str]:
  """Raw split name -> folder.

  Raises:
    DataError: when the raw folder, its ``Training`` folder, or every test
      folder is missing; the message says which structure was expected.
  """
  expected = expected_structure(dataset, groups)
  if not os.path.isdir(raw):
    raise DataError(f'{dataset} raw folder {raw!r} does not exist; expected '
                    f'{expected}')
  root = raw
  if find_child(raw, 'Training') is None:
    nested = find_child(raw, dataset)
    if nested is None and dataset == 'IAS':
      nested = find_child(raw, 'IAS-Lab')
    if nested is not None:
      root = nested
  found = {}
  for group, parts in groups:
    folder = find_path(root, parts)
    if folder is not None:
      found[group] = folder
  training = groups[0][0]
  if training not in found:
    raise DataError(f'no {training} folder under {raw!r}; expected {expected}')
  if len(found) == 1:
    raise DataError(f'no test folder under {root!r} (looked for '
                    f'{", ".join("/".join(p) for _, p in groups[1:])}); '
                    f'expected {expected}')
  for group, parts in groups:
    if group not in found:
      manifest.warn(f'test folder {"/".join(parts)} not found under {root!r}; '
                    f'the {group} split will be missing')
  return found


def _recording_folders(person_folder: str) -> list[str]:
  """Folders under (and including) person_folder that hold frame files."""
  result = []
  for folder, subfolders, files in os.walk(person_folder):
    subfolders.sort(key=rec_lib.natural_key)
    if any(f.lower().endswith(FRAME_SUFFIX) for f in files):
      result.append(folder)
  return result


def read_recordings(raw: str, dataset: str, manifest,
                    progress: Callable[[str], None]
                    ) -> list[rec_lib.Recording]:
  """Reads every BIWI or IAS recording under ``raw``.

  Args:
    raw: the user's ``--raw`` folder.
    dataset: 'BIWI' or 'IAS'.
    manifest: a ``Manifest``; skipped folders and warnings go there.
    progress: called with one line per person folder.

  Returns:
    Recordings ordered by raw split (train first), person, folder.
  """
  groups = BIWI_GROUPS if dataset == 'BIWI' else IAS_GROUPS
  folders = find_group_folders(raw, dataset, groups, manifest)
  result = []
  for group, _ in groups:
    if group not in folders:
      continue
    group_folder = folders[group]
    people = []
    for name in os.listdir(group_folder):
      path = os.path.join(group_folder, name)
      if not os.path.isdir(path):
        continue
      person = rec_lib.person_from_name(name)
      if person is None:
        manifest.skip_source(
            os.path.relpath(path, raw),
            'cannot tell the person: folder name must hold exactly one number')
        continue
      people.append((person, name, path))
    people.sort()
    if not people:
      manifest.warn(f'no person folders in {group_folder!r}')
    for number, (person, name, path) in enumerate(people, 1):
      recording_folders = _recording_folders(path)
      if not recording_folders:
        manifest.skip_source(os.path.relpath(path, raw),
                             f'no *{FRAME_SUFFIX} files')
        continue
      frames = 0
      for folder in recording_folders:
        recording = read_frame_folder(folder, raw, person, group, manifest)
        if recording is not None:
          result.append(recording)
          frames += recording.num_frames
      progress(f'{dataset} {group} [{number}/{len(people)}] person {person}: '
               f'{len(recording_folders)} recording(s), {frames} frames kept')
  return result
