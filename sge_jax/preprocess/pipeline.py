"""Raw dataset -> the authors' preprocessed layout, with a manifest.

``run`` reads the raw recordings (``kgbd``, ``biwi_ias``, ``ks20``), cuts each
into non-overlapping f-frame windows after dropping 10 frames at each end (docs/method.md
§2.1, ``cut_windows``), splits them, and writes every split with
``sge_jax.data.authors_writer.write_authors_split`` (sources, reversed targets,
ids, and the recording id of every sequence in ``recordings_<TAG>_<f>.npy``, an
extra file the authors' code never opens; the recording ids are the manifest's)
in two layouts:

* ``<out>/<DS>/<f>/`` -- the CAGEs release (docs/method.md §2.2): one test folder.
  BIWI: Walking as ``t_*_BIWI_<f>``, Still as ``t_*_BIWI-Still_<f>``; IAS:
  ``t_*_IAS-A_<f>`` and ``t_*_IAS-B_<f>``; KGBD and KS20: the probe recordings.
  The KGBD/KS20 training set there is every non-probe recording, gallery ones
  included: the CAGEs protocol trains the recognition network on the training
  sequences and classifies the probe ("leave one recording per person for
  testing, train on the rest"), so there is no gallery to hold back.
* ``<out>/spc_mgr/<DS>/<f>/`` -- the SPC-MGR release: test sub-folders
  ``gallery/``+``probe/`` (KGBD, KS20), ``Walking/``+``Still/`` (BIWI),
  ``A/``+``B/`` (IAS). Here KGBD/KS20 train holds only the recordings that are
  neither gallery nor probe. It is a separate root because the project's loader
  reads a test folder's direct files and its sub-folders together (BIWI's
  Walking, IAS's A/B would clash), and the two train sets differ. Load it with
  ``--config.data.root=<out>/spc_mgr``.

KS20 is written for all views together and once per view
(``.../KS20/<f>/view_<v>/``, ``v`` = index in ``ks20.VIEWS``).

Sequences are stored recording by recording, each in time order (the
locality-aware contrastive loss treats batch neighbours as positives);
recordings are ordered by person, then file/folder name (KS20: view first).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from typing import Callable, Optional, Sequence

import numpy as np

from sge_jax.data import authors_writer
from sge_jax.data import joints
from sge_jax.errors import ConfigError, DataError
from sge_jax.preprocess import biwi_ias
from sge_jax.preprocess import kgbd
from sge_jax.preprocess import ks20
from sge_jax.preprocess import manifest as manifest_lib
from sge_jax.preprocess import recordings as rec_lib

DATASETS = ('KGBD', 'BIWI', 'IAS', 'KS20')
CAGES = 'cages'
SPC_MGR = 'spc_mgr'
# The SPC-MGR-layout copy lives under <out>/<SPC_MGR_ROOT>/.
SPC_MGR_ROOT = 'spc_mgr'

_LAYOUTS = {'KGBD': joints.KINECT_V1, 'BIWI': joints.KINECT_V1,
            'IAS': joints.KINECT_V1, 'KS20': joints.KINECT_V2}

_READ_RULES = {
    'KGBD': ('frames delimited by joint names (a frame starts at the file\'s '
             'first joint or when a joint repeats); a frame with a missing '
             'joint, a non-numeric or non-finite value, or a joint exactly at '
             '(0,0,0) (not tracked) is dropped; joints stored in KINECT_V1 '
             'order by name'),
    'BIWI': ('first 20 lines of each *skel.txt frame file; a frame is dropped '
             'when any joint has tracking state 0 or sits exactly at (0,0,0), '
             'or on a missing joint, malformed line, non-numeric or non-finite '
             'value'),
    'KS20': ('skeleton arrays found by shape in the .mat files ([T,25,3], '
             '[T,75] joint-major, [25,3] frames); frames with non-finite values '
             'or a joint exactly at (0,0,0) (not tracked) are dropped'),
}
_READ_RULES['IAS'] = _READ_RULES['BIWI']

_SPLIT_RULES = {
    'KGBD': ('per person, seeded by (seed, person): 2 gallery + 1 probe '
             'recordings, rest train; fewer when a person has fewer usable '
             'recordings (one always stays in train; 3 -> 1 + 1 + 1, as the '
             'authors do for person 15). Gallery/probe are drawn among '
             'recordings with at least 30 usable frames, so the draw is the '
             'same for every f. CAGEs layout: test = probe, train = all other '
             'recordings; SPC-MGR layout: gallery/, probe/, train = the rest'),
    'KS20': ('per person, seeded by (seed, person): 1 gallery + 1 probe walk '
             '(gc1..gc3) in all views at once, the rest train (the authors\' '
             'rule). CAGEs layout: test = probe, train = all other walks; '
             'SPC-MGR layout: gallery/, probe/, train = the rest'),
    'BIWI': 'given by the raw folders: Training, Testing/Walking, Testing/Still',
    'IAS': 'given by the raw folders: Training, TestingA, TestingB',
}


@dataclasses.dataclass(frozen=True)
class PlannedSplit:
  """One split to write.

  Attributes:
    variant: CAGES or SPC_MGR.
    view_folder: '' or ``view_<v>`` (KS20).
    name: split name as the loader reports it (train, test, Walking, Still, A,
      B, gallery, probe).
    train: whether it goes to the training folder.
    tag: file tag (``KGBD``, ``IAS-A``, ``BIWI-Still``, ...).
    subfolder: test sub-folder (SPC-MGR layout) or None.
    recording_ids: recordings whose sequences it holds, in stored order.
  """
  variant: str
  view_folder: str
  name: str
  train: bool
  tag: str
  subfolder: Optional[str]
  recording_ids: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Result:
  """What ``run`` produced.

  Attributes:
    manifest: the Manifest (``to_dict()`` is what was written).
    manifest_paths: where manifest.json was written (one per layout root).
    dataset_dirs: layout -> ``<root>/<DS>/<f>`` folder written.
  """
  manifest: manifest_lib.Manifest
  manifest_paths: tuple[str, ...]
  dataset_dirs: dict


def _check_options(dataset: str, length: int, seed: int) -> None:
  if dataset not in DATASETS:
    raise ConfigError(f'--dataset must be one of {", ".join(DATASETS)}, got '
                      f'{dataset!r}')
  if seed < 0:
    raise ConfigError(f'--seed must be >= 0, got {seed}')
  if length not in rec_lib.SUPPORTED_LENGTHS:
    raise ConfigError(
        f'--length must be one of '
        f'{", ".join(map(str, rec_lib.SUPPORTED_LENGTHS))}, got {length!r}')


def _read(dataset: str, raw: str, manifest, progress):
  if dataset == 'KGBD':
    return kgbd.read_recordings(raw, manifest, progress)
  if dataset in ('BIWI', 'IAS'):
    return biwi_ias.read_recordings(raw, dataset, manifest, progress)
  return ks20.read_recordings(raw, manifest, progress)


def _plan_given_groups(dataset: str, recordings: Sequence[rec_lib.Recording],
                       ids: Sequence[int]) -> list[PlannedSplit]:
  """BIWI / IAS: the raw folders are the splits."""
  by_group = rec_lib.group_by(zip(recordings, ids), lambda pair: pair[0].group)

  def members(group):
    return tuple(i for _, i in by_group.get(group, []))

  if dataset == 'BIWI':
    tests = (('Walking', 'Walking', 'BIWI'), ('Still', 'Still', 'BIWI-Still'))
  else:
    tests = (('A', 'TestingA', 'IAS-A'), ('B', 'TestingB', 'IAS-B'))
  plan = []
  for variant in (CAGES, SPC_MGR):
    plan.append(PlannedSplit(variant, '', 'train', True, dataset, None,
                             members('Training')))
    for name, group, cages_tag in tests:
      if variant == CAGES:
        plan.append(PlannedSplit(variant, '', name, False, cages_tag, None,
                                 members(group)))
      else:
        plan.append(PlannedSplit(variant, '', name, False, dataset, name,
                                 members(group)))
  return plan


def _assign_sessions(dataset: str, recordings: Sequence[rec_lib.Recording],
                     seed: int, manifest) -> dict[tuple[int, str], str]:
  """KGBD / KS20: (person, session) -> 'gallery' | 'probe' | 'train'."""
  num_gallery = 2 if dataset == 'KGBD' else 1
  role = {}
  for person, recs in rec_lib.group_by(recordings,
                                       lambda r: r.person).items():
    sessions = rec_lib.group_by(recs, lambda r: r.session)
    candidates = [s for s, rs in sessions.items()
                  if any(rec_lib.is_test_candidate(r) for r in rs)]
    others = [s for s in sessions if s not in candidates]
    assignment = rec_lib.assign_test_sessions(candidates, others, person, seed,
                                              num_gallery=num_gallery)
    manifest.add_test_assignment(str(person), assignment)
    for kind in ('gallery', 'probe', 'train'):
      for session in getattr(assignment, kind):
        role[(person, session)] = kind
  return role


def _plan_drawn(dataset: str, recordings: Sequence[rec_lib.Recording],
                ids: Sequence[int], role: dict) -> list[PlannedSplit]:
  """KGBD / KS20: splits from the seeded per-person assignment."""
  view_folders = [('', None)]
  if dataset == 'KS20':
    seen = {r.view for r in recordings}
    view_folders += [(f'view_{v}', view) for v, view in enumerate(ks20.VIEWS)
                     if view in seen]
  plan = []
  for view_folder, view in view_folders:
    chosen = [(r, i) for r, i in zip(recordings, ids)
              if view is None or r.view == view]

    def members(kinds, chosen=chosen):
      return tuple(i for r, i in chosen
                   if role[(r.person, r.session)] in kinds)

    plan += [
        PlannedSplit(CAGES, view_folder, 'train', True, dataset, None,
                     members(('train', 'gallery'))),
        PlannedSplit(CAGES, view_folder, 'test', False, dataset, None,
                     members(('probe',))),
        PlannedSplit(SPC_MGR, view_folder, 'train', True, dataset, None,
                     members(('train',))),
        PlannedSplit(SPC_MGR, view_folder, 'gallery', False, dataset,
                     'gallery', members(('gallery',))),
        PlannedSplit(SPC_MGR, view_folder, 'probe', False, dataset, 'probe',
                     members(('probe',))),
    ]
  return plan


def dataset_dirs(out: str, dataset: str, length: int) -> dict[str, str]:
  """Layout -> the ``<root>/<DS>/<f>`` folder it is written to."""
  return {CAGES: os.path.join(out, dataset, str(length)),
          SPC_MGR: os.path.join(out, SPC_MGR_ROOT, dataset, str(length))}


def _data_folders(dirs: dict[str, str], dataset: str,
                  plan: Sequence[PlannedSplit]) -> list[str]:
  folders = set()
  for split in plan:
    base = os.path.join(dirs[split.variant], split.view_folder)
    for kind in ('train', 'test'):
      folders.add(os.path.join(base, f'{dataset}_{kind}_npy_data'))
  return sorted(folders)


def _prepare_output(folders: Sequence[str], overwrite: bool) -> None:
  existing = [f for f in folders if os.path.exists(f)]
  if existing and not overwrite:
    raise DataError(
        'output already exists: ' + ', '.join(existing[:4])
        + (f' (and {len(existing) - 4} more)' if len(existing) > 4 else '')
        + '; pass --overwrite to replace these folders, or choose another '
        '--out')
  for folder in existing:
    shutil.rmtree(folder)


def run(dataset: str, raw: str, out: str, length: int, seed: int = 0,
        overwrite: bool = False,
        progress: Callable[[str], None] = print) -> Result:
  """Preprocesses one raw dataset into the authors' layout.

  Args:
    dataset: KGBD, BIWI, IAS or KS20.
    raw: folder of the original download (see each reader's docstring).
    out: the ``Datasets`` root to write into.
    length: f, one of 4, 6, 8, 10.
    seed: seed of the KGBD/KS20 gallery/probe draw.
    overwrite: replace existing data folders of this dataset and f.
    progress: called with human-readable progress lines.

  Returns:
    Result.

  Raises:
    ConfigError: unknown dataset or length, negative seed.
    DataError: raw folder missing or with the wrong structure, nothing usable
      in it, or output exists without ``overwrite``.
  """
  _check_options(dataset, length, seed)
  layout = _LAYOUTS[dataset]
  manifest = manifest_lib.Manifest(
      dataset=dataset, length=length, seed=seed, raw=os.path.abspath(raw),
      out=os.path.abspath(out), rules={
          'edge_frames': (f'first and last {rec_lib.EDGE_FRAMES_DROPPED} '
                          'frames of every recording dropped'),
          'windows': ('non-overlapping f-frame windows in time order; frames '
                      'after the last full window dropped'),
          'targets': 'target = source sequence reversed in time',
          'reading': _READ_RULES[dataset],
          'test_split': _SPLIT_RULES[dataset],
          'order': ('recordings by person then file/folder name (KS20: view '
                    'first), each recording\'s sequences consecutive'),
          'layouts': (f'{CAGES}: <out>/{dataset}/<f>/ (one test folder); '
                      f'{SPC_MGR}: <out>/{SPC_MGR_ROOT}/{dataset}/<f>/ (test '
                      'sub-folders)'),
      })
  manifest.joint_layout = layout.name
  manifest.joint_names = list(layout.joint_names)

  recordings = _read(dataset, raw, manifest, progress)
  if not recordings:
    raise DataError(f'no usable {dataset} recording under {raw!r}; see the '
                    'warnings above for what was skipped and why')
  large = [r.source for r in recordings
           if rec_lib.looks_like_millimetres(r.frames)]
  if large:
    manifest.warn(
        f'{len(large)} recording(s) have a median |coordinate| above '
        f'{rec_lib.MILLIMETRE_HINT_METRES} m, which looks like millimetres (first: '
        f'{large[0]}); the data were NOT rescaled')

  cuts = [rec_lib.cut_recording(r.frames, length) for r in recordings]
  ids = [manifest.add_recording(r, c) for r, c in zip(recordings, cuts)]
  if dataset in ('BIWI', 'IAS'):
    plan = _plan_given_groups(dataset, recordings, ids)
  else:
    role = _assign_sessions(dataset, recordings, seed, manifest)
    plan = _plan_drawn(dataset, recordings, ids, role)

  dirs = dataset_dirs(out, dataset, length)
  _prepare_output(_data_folders(dirs, dataset, plan), overwrite)
  by_id = {i: (r, c) for i, r, c in zip(ids, recordings, cuts)}
  for planned in plan:
    _write_split(planned, by_id, dirs, dataset, length, layout, manifest)
    split_stats = manifest.splits.get(
        _variant_key(planned), {}).get(planned.name)
    if split_stats is not None:
      progress(f'wrote {_variant_key(planned)}/{planned.name}: '
               f'{split_stats["sequences"]} sequences, '
               f'{split_stats["people"]} people')

  paths = []
  for variant in (CAGES, SPC_MGR):
    paths.append(manifest.write(
        os.path.join(dirs[variant], manifest_lib.MANIFEST_NAME)))
  return Result(manifest=manifest, manifest_paths=tuple(paths),
                dataset_dirs=dirs)


def _variant_key(planned: PlannedSplit) -> str:
  return (planned.variant if not planned.view_folder
          else f'{planned.variant}/{planned.view_folder}')


def _write_split(planned: PlannedSplit, by_id: dict, dirs: dict[str, str],
                 dataset: str, length: int, layout: joints.JointLayout,
                 manifest) -> None:
  parts = [(i, by_id[i][0].person, by_id[i][1].windows)
           for i in planned.recording_ids]
  split = rec_lib.assemble_split(parts, length, layout.num_joints)
  key = _variant_key(planned)
  directory = os.path.join(dirs[planned.variant], planned.view_folder)
  if split.num_sequences == 0:
    manifest.warn(f'{key}/{planned.name}: no sequences, nothing written; the '
                  'loader will not find this split')
    manifest.splits.setdefault(key, {})[planned.name] = {
        'directory': '', 'sequences': 0, 'people': 0, 'recordings': 0,
        'per_person': {}}
    return
  written = authors_writer.write_authors_split(
      directory, planned.tag, length, split.sequences, split.labels,
      train=planned.train, subfolder=planned.subfolder, dataset_name=dataset,
      recordings=split.recordings)
  folder = os.path.dirname(str(written[0]))
  manifest.add_split(key, planned.name, os.path.relpath(folder, manifest.out),
                     split)
  manifest.files.extend(os.path.relpath(str(p), manifest.out) for p in written)
  for recording_id in np.unique(split.recordings).tolist():
    manifest.assign(recording_id, key, planned.name)
