"""``manifest.json``: what preprocessing read, dropped, split and wrote.

One manifest is written per dataset and sequence length, next to the arrays
(``<out>/<DS>/<f>/manifest.json``). It records

* the options (seed, f, raw folder, rules applied);
* every recording found: its source file or folder, person, raw split, frames
  read, frames dropped while reading and why, frames dropped at the edges and
  after the last window, the number of sequences, where it went (or why it was
  skipped);
* sources that gave no recording at all (empty or unreadable files) and why;
* the seeded gallery/probe/train assignment per person (KGBD, KS20);
* per written split: folder, sequences, people, and counts per person;
* every warning (each is also logged).

Nothing is dropped without a count here, so a surprising number in a result can
be traced back to the raw workdir.
"""

from __future__ import annotations

import collections
import json
import os
from typing import Any, Mapping, Optional

from absl import logging
import numpy as np

from sge_jax import workdir
from sge_jax.data.dataset import SkeletonSplit
from sge_jax.preprocess import recordings as rec_lib

MANIFEST_NAME = 'manifest.json'
MANIFEST_VERSION = 1


class Manifest:
  """Collects the facts of one preprocessing run; ``write`` saves them as JSON."""

  def __init__(self, dataset: str, length: int, seed: int, raw: str, out: str,
               rules: Mapping[str, str]):
    self.dataset = dataset
    self.length = length
    self.seed = seed
    self.raw = raw
    self.out = out
    self.rules = dict(rules)
    self.joint_layout: Optional[str] = None
    self.joint_names: Optional[list[str]] = None
    self.recordings: list[dict[str, Any]] = []
    self.skipped_sources: list[dict[str, str]] = []
    self.warnings: list[dict[str, str]] = []
    self.test_assignment: dict[str, dict[str, Any]] = {}
    self.splits: dict[str, dict[str, dict[str, Any]]] = {}
    self.files: list[str] = []

  def warn(self, message: str, source: str = '') -> None:
    """Logs a warning and records it."""
    logging.warning('%s%s', f'{source}: ' if source else '', message)
    self.warnings.append({'source': source, 'message': message})

  def skip_source(self, source: str, reason: str) -> None:
    """A raw file or folder that gave no recording (empty, unreadable, ...)."""
    self.skipped_sources.append({'source': source, 'reason': reason})
    self.warn(f'skipped: {reason}', source)

  def add_recording(self, recording: rec_lib.Recording,
                    cut: Optional[rec_lib.CutResult]) -> int:
    """Records one recording and how it was cut; returns its recording id.

    A recording that yields no window is marked skipped (with a warning): it is
    counted, never silently lost.
    """
    for note in recording.notes:
      self.warn(note, recording.source)
    if sum(recording.dropped.values()):
      reasons = ', '.join(f'{n} {why}'
                          for why, n in sorted(recording.dropped.items()))
      self.warn(f'dropped {sum(recording.dropped.values())} of '
                f'{recording.frames_read} frames while reading ({reasons})',
                recording.source)
    entry = {
        'id': len(self.recordings),
        'person': int(recording.person),
        'source': recording.source,
        'group': recording.group,
        'session': recording.session,
        'view': recording.view,
        'frames_read': int(recording.frames_read),
        'frames_dropped_reading': dict(sorted(recording.dropped.items())),
        'frames_kept': recording.num_frames,
        'frames_dropped_edges': cut.edge_frames if cut else 0,
        'frames_dropped_leftover': cut.leftover_frames if cut else 0,
        'sequences': cut.num_windows if cut else 0,
        'status': 'used',
        'reason': '',
        'splits': {},
    }
    if entry['sequences'] == 0:
      entry['status'] = 'skipped'
      entry['reason'] = (
          f'shorter than one window: {recording.num_frames} usable frames, '
          f'need {2 * rec_lib.EDGE_FRAMES_DROPPED + self.length} '
          f'(10 dropped at each end + f={self.length})')
      self.warn(f'skipped: {entry["reason"]}', recording.source)
    self.recordings.append(entry)
    return entry['id']

  def assign(self, recording_id: int, variant: str, split: str) -> None:
    """Notes that a recording's sequences went to ``variant``/``split``."""
    self.recordings[recording_id]['splits'][variant] = split

  def add_test_assignment(self, key: str,
                          assignment: rec_lib.TestAssignment) -> None:
    self.test_assignment[key] = {
        'gallery': [str(s) for s in assignment.gallery],
        'probe': [str(s) for s in assignment.probe],
        'train': [str(s) for s in assignment.train],
        'note': assignment.note,
    }
    if assignment.note:
      self.warn(assignment.note)

  def add_split(self, variant: str, split_name: str, directory: str,
                split: SkeletonSplit) -> None:
    """Records a written split: folder, sizes and counts per person."""
    per_person: dict[str, dict[str, int]] = {}
    sequences = rec_lib.count_by_person(split.labels)
    for person, count in sequences.items():
      mask = split.labels == person
      per_person[str(person)] = {
          'sequences': count,
          'recordings': int(np.unique(split.recordings[mask]).size)
                        if split.recordings is not None else 0,
      }
    self.splits.setdefault(variant, {})[split_name] = {
        'directory': directory,
        'sequences': split.num_sequences,
        'people': len(per_person),
        'recordings': int(np.unique(split.recordings).size)
                      if split.recordings is not None else 0,
        'per_person': per_person,
    }
    if split.num_sequences == 0:
      self.warn(f'split {variant}/{split_name} is empty')

  def summary(self) -> dict[str, Any]:
    """Totals over all recordings."""
    reading = collections.Counter()
    for entry in self.recordings:
      reading.update(entry['frames_dropped_reading'])
    used = [e for e in self.recordings if e['status'] == 'used']
    return {
        'people': len({e['person'] for e in used}),
        'recordings_found': len(self.recordings),
        'recordings_used': len(used),
        'recordings_skipped': len(self.recordings) - len(used),
        'sources_skipped': len(self.skipped_sources),
        'frames_read': sum(e['frames_read'] for e in self.recordings),
        'frames_dropped_reading': dict(sorted(reading.items())),
        'frames_dropped_edges': sum(
            e['frames_dropped_edges'] for e in self.recordings),
        'frames_dropped_leftover': sum(
            e['frames_dropped_leftover'] for e in self.recordings),
        'sequences': {f'{variant}/{name}': s['sequences']
                      for variant, splits in self.splits.items()
                      for name, s in splits.items()},
        'warnings': len(self.warnings),
    }

  def to_dict(self) -> dict[str, Any]:
    return {
        'manifest_version': MANIFEST_VERSION,
        'created_by': 'sge_jax.preprocess',
        'dataset': self.dataset,
        'length': self.length,
        'seed': self.seed,
        'raw': self.raw,
        'out': self.out,
        'joint_layout': self.joint_layout,
        'joint_names': self.joint_names,
        'rules': self.rules,
        'summary': self.summary(),
        'splits': self.splits,
        'test_assignment': self.test_assignment,
        'recordings': self.recordings,
        'skipped_sources': self.skipped_sources,
        'warnings': self.warnings,
        'files': sorted(self.files),
    }

  def write(self, path: str) -> str:
    """Writes the manifest as indented JSON; returns the path."""
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    workdir.write_text_atomically(
        path, json.dumps(self.to_dict(), indent=1, sort_keys=False) + '\n')
    return path
