"""The authors' preprocessed .npy layout (docs/method.md §2.2): loader and writer.

On-disk layout, with f the sequence length, <DS> the dataset folder name and <TAG>
the file tag (usually <DS>; see "File tags" below)::

  <root>/<DS>/<f>[/<view>]/<DS>_train_npy_data/source_{x,y,z}_<TAG>_<f>.npy
                                              target_{x,y,z}_<TAG>_<f>.npy  (optional)
                                              ids_<TAG>_<f>.npy
                                              recordings_<TAG>_<f>.npy  (optional)
  <root>/<DS>/<f>[/<view>]/<DS>_test_npy_data[/<split>]/t_source_{x,y,z}_<TAG>_<f>.npy
                                                       t_target_{x,y,z}_<TAG>_<f>.npy
                                                       ids_<TAG>_<f>.npy

* ``source_<axis>`` holds one coordinate of every sequence, [N*f, J] (the authors'
  files) or [N, f, J], in metres; the three axes stack to [N, f, J, 3].
* ``target_<axis>`` is the same sequences reversed in time. Not required; when
  present it is checked against the sources (a mismatch means mixed-up files).
* ``ids_<TAG>_<f>.npy`` is a pickled dict person id -> list of sequence indices;
  every index 0..N-1 must appear exactly once. Person ids are kept as they are
  (they need not be contiguous).
* ``recordings_<TAG>_<f>.npy`` (not in the authors' release; written by
  ``python -m sge_jax.preprocess``): the recording id of each sequence, int64
  [N], for walk-level evaluation (``sge_jax.data.recording_ids``). Optional, in
  train and test folders alike; a recording holds one person and may not occur
  in the training split and a test split.
* The data folders are called ``<DS>_train_npy_data``/``<DS>_test_npy_data`` in the
  CAGEs release and ``train_npy_data``/``test_npy_data`` in the later SPC-MGR
  release; both are accepted.

Test splits. A test folder holds one or more splits, found two ways:

* Files directly in the test folder: tag ``<TAG>`` is the default split, named
  ``Walking`` for BIWI (the authors' single BIWI test set is Testing/Walking) and
  ``test`` otherwise; tag ``<TAG>-<S>`` is split ``S``. So IAS's
  ``t_source_x_IAS-A_6.npy``/``..._IAS-B_6.npy`` are splits ``A``/``B``, and a BIWI
  Still set stored next to the Walking one is ``t_source_x_BIWI-Still_6.npy`` (the
  same pattern as IAS; ``BIWI-Walking`` is accepted too).
* Sub-folders of the test folder (SPC-MGR release): the sub-folder name is the split
  name (``gallery``/``probe`` for KGBD and KS20, ``A``/``B`` for IAS,
  ``Walking``/``Still`` for BIWI). Each holds files with a single tag.

<TAG> is the tag of the training files; without a training folder it is the
dataset name (``CASIA_B`` for ``CASIA_B_match``).

View folders (``view`` argument):

* KS20: optional ``view_<v>`` (``view='0'`` or ``view='view_0'``).
* CASIA-B CVE: ``<root>/CASIA_B/<f>/view_<v>/CASIA_B_{train,test}_npy_data/``.
* CASIA-B CME, ``view='<probe>.<gallery>'`` (e.g. ``nm.bg``), two layouts:

  - ``<root>/CASIA_B_match/<f>/<probe>.<gallery>/CASIA_B_test_npy_data/`` with
    sub-folders ``gallery/`` and ``probe/`` (docs/method.md §2.2), optionally with
    ``CASIA_B_train_npy_data/`` next to it;
  - ``<root>/CASIA_B_match/<f>/CASIA_B_test_npy_data/{nm,bg,cl}/`` with one folder
    per walking condition, as the authors' CME-CASIA-B.py reads it; the probe and
    gallery condition folders become splits ``probe`` and ``gallery`` (the same
    data for both when the conditions are equal, e.g. ``nm.nm``).

  CME needs no training split.
"""

from __future__ import annotations

import logging
import pathlib
import re
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np

from sge_jax.data import input_files
from sge_jax.data import memory
from sge_jax.data import joints
from sge_jax.data import recording_ids
from sge_jax.data.dataset import SkeletonDataset, SkeletonSplit
from sge_jax.data.safe_pickle import read_ids_file
from sge_jax.data.units import integer_coordinates_warning
from sge_jax.errors import DataError

AXES = ('x', 'y', 'z')

GETTING_DATA_HINT = (
    'The section "Getting the data" of docs/data.md explains how to get the preprocessed '
    'files; `python -m sge_jax.preprocess` builds them from the original '
    'downloads.')

# Known split names, in the order reports should list them; others follow sorted.
_SPLIT_ORDER = ('train', 'test', 'Walking', 'Still', 'A', 'B', 'gallery', 'probe')

# Dataset folders whose files carry another dataset's tag.
_TAG_ALIASES = {'CASIA_B_match': 'CASIA_B'}

_CONDITION_PAIR = re.compile(r'^([A-Za-z0-9]+)\.([A-Za-z0-9]+)$')


def condition_pair(view: str) -> Optional[tuple[str, str]]:
  """CASIA-B CME 'nm.bg' -> ('nm', 'bg') (probe, gallery); None when not a pair."""
  match = _CONDITION_PAIR.match((view or '').strip())
  return (match.group(1), match.group(2)) if match else None

_MAX_LISTED = 12


# ---------------------------------------------------------------- writer


def write_authors_split(dataset_dir: str | pathlib.Path,
                        tag: str,
                        length: int,
                        sequences: np.ndarray,
                        labels: np.ndarray,
                        *,
                        train: bool,
                        subfolder: Optional[str] = None,
                        dataset_name: Optional[str] = None,
                        recordings: Optional[np.ndarray] = None
                        ) -> list[pathlib.Path]:
  """Writes one split in the authors' file layout.

  Files written, with DS = ``dataset_name`` and ``p`` = ``''`` for train or ``'t_'``
  for test::

    <dataset_dir>/<DS>_{train,test}_npy_data[/<subfolder>]/
        <p>source_{x,y,z}_<tag>_<length>.npy   [N*f, J] float32
        <p>target_{x,y,z}_<tag>_<length>.npy   [N*f, J] float32, reversed in time
        ids_<tag>_<length>.npy                 pickled dict person -> [indices]
        recordings_<tag>_<length>.npy          [N] int64 recording ids (only
                                               with ``recordings``; no pickle)

  Examples: KGBD train ``(dir, 'KGBD', 6, ..., train=True)``; IAS test set A
  ``(dir, 'IAS-A', 6, ..., train=False)`` ->
  ``IAS_test_npy_data/t_source_x_IAS-A_6.npy``;
  the SPC-MGR form ``(dir, 'IAS', 6, ..., train=False, subfolder='A')`` ->
  ``IAS_test_npy_data/A/t_source_x_IAS_6.npy``; CASIA-B CME gallery
  ``(<root>/CASIA_B_match/50/nm.bg, 'CASIA_B', 50, ..., train=False,
  subfolder='gallery')``.

  Args:
    dataset_dir: ``<root>/<DS>/<f>`` or ``<root>/<DS>/<f>/<view folder>``.
    tag: file tag: the dataset name, or ``<name>-<split>`` for several test
      sets in one folder (``IAS-A``, ``BIWI-Still``).
    length: frames per sequence, f.
    sequences: [N, f, J, 3] joint positions in metres, stored order.
    labels: [N] integer person ids.
    train: True for the training folder, False for the test folder.
    subfolder: test split sub-folder (SPC-MGR layout), e.g. ``'probe'``.
    dataset_name: the DS prefix of the data folder. Default: ``tag`` up to its
      first ``-`` (``IAS-A`` -> ``IAS``).
    recordings: [N] recording id (>= 0) of each sequence, or None to write no
      recordings file (``sge_jax.data.recording_ids``).

  Returns:
    The paths written: 3 sources, 3 targets, the ids file, then the
    recordings file when ``recordings`` is given.

  Raises:
    DataError: sequences/labels with the wrong shape, f != length, non-finite
      values, or no sequences.
  """
  sequences = np.asarray(sequences)
  labels = np.asarray(labels)
  if (sequences.ndim != 4 or sequences.shape[1] != length
      or sequences.shape[3] != 3):
    raise DataError(
        f'write_authors_split: sequences must be [N, f={length}, J, 3], got '
        f'{sequences.shape}')
  if sequences.shape[0] == 0:
    raise DataError('write_authors_split: no sequences to write')
  if labels.shape != (sequences.shape[0],):
    raise DataError(
        f'write_authors_split: labels must be [N={sequences.shape[0]}], got '
        f'{labels.shape}')
  if not np.issubdtype(labels.dtype, np.integer):
    raise DataError(
        f'write_authors_split: labels must be integers, got {labels.dtype}')
  if not np.all(np.isfinite(sequences)):
    bad = tuple(int(i) for i in np.argwhere(~np.isfinite(sequences))[0])
    raise DataError(
        f'write_authors_split: non-finite value at [sequence, frame, joint, '
        f'axis] = {bad}')
  if recordings is not None and not (
      np.shape(recordings) == labels.shape
      and np.issubdtype(np.asarray(recordings).dtype, np.integer)
      and recording_ids.known(recordings)):
    raise DataError(
        f'write_authors_split: recordings must be [N={labels.shape[0]}] '
        'integers >= 0, got '
        f'{np.asarray(recordings).dtype} {np.shape(recordings)}')

  dataset_name = dataset_name or tag.split('-')[0]
  folder = pathlib.Path(dataset_dir) / _data_folder_name(dataset_name, train)
  if subfolder:
    folder = folder / subfolder
  folder.mkdir(parents=True, exist_ok=True)

  prefix = '' if train else 't_'
  num_sequences, _, num_joints, _ = sequences.shape
  values = sequences.astype(np.float32)
  written = []
  for kind in ('source', 'target'):
    for axis_index, axis in enumerate(AXES):
      series = values[..., axis_index]
      if kind == 'target':
        series = series[:, ::-1]
      path = folder / f'{prefix}{kind}_{axis}_{tag}_{length}.npy'
      np.save(path, np.ascontiguousarray(series).reshape(
          num_sequences * length, num_joints))
      written.append(path)

  ids = {int(person): [int(i) for i in np.flatnonzero(labels == person)]
         for person in np.unique(labels)}
  ids_path = folder / f'ids_{tag}_{length}.npy'
  np.save(ids_path, ids, allow_pickle=True)
  written.append(ids_path)
  recordings_path = folder / recording_ids.recordings_file_name(tag, length)
  if recordings is not None:
    written.append(recording_ids.write_recordings_file(folder, tag, length,
                                                       recordings))
  elif recordings_path.is_file():
    recordings_path.unlink()    # a stale file would describe other sequences
  return written


def _data_folder_name(dataset_name: str, train: bool) -> str:
  return f'{dataset_name}_{"train" if train else "test"}_npy_data'


# ---------------------------------------------------------------- loader


def load_authors_dataset(root: str | pathlib.Path,
                         name: str,
                         length: int,
                         view: str = '') -> SkeletonDataset:
  """Loads ``<root>/<name>/<length>[/<view>]`` in the authors' layout.

  Args:
    root: the authors' ``Datasets/`` folder.
    name: dataset folder name (KGBD, BIWI, IAS, KS20, CASIA_B, CASIA_B_match or
      any other name in the same layout).
    length: frames per sequence, f.
    view: view folder (``'0'`` or ``'view_0'`` for KS20 / CASIA-B CVE) or CASIA-B
      CME ``'<probe>.<gallery>'`` condition pair; ``''`` for none.

  Returns:
    A SkeletonDataset with ``train`` (absent only for CASIA-B CME without a
    training folder) and the test splits found on disk (see module docstring);
    sequences [N, f, J, 3] float32 in metres, labels [N] int64 person ids,
    recordings [N] int64 from a split's ``recordings_<TAG>_<f>.npy`` when it
    has one, else None.

  Raises:
    DataError: missing folders or files, unknown view, malformed or
      inconsistent arrays. Messages name the paths and what to do.
  """
  root = pathlib.Path(root)
  length_dir = _length_dir(root, name, length)
  dataset_dir, condition_pair = _resolve_view(length_dir, name, view)
  # CASIA-B CME only matches probe to gallery; it may come without train data.
  train_optional = bool(_CONDITION_PAIR.match(view or '')) or (
      name == 'CASIA_B_match')

  train_folder = _find_data_folder(dataset_dir, name, train=True)
  test_folder = _find_data_folder(dataset_dir, name, train=False)
  base_tag = _TAG_ALIASES.get(name, name)
  if train_folder is None and test_folder is None:
    raise DataError(
        f'No data folders in {dataset_dir}. Expected:\n'
        + _expected_listing(dataset_dir, name, base_tag, length)
        + '\n' + GETTING_DATA_HINT)

  splits: dict[str, SkeletonSplit] = {}
  if train_folder is not None:
    train_tag = _choose_tag(train_folder, '', length, (name, base_tag))
    splits['train'] = _load_split(train_folder, '', train_tag, length)
    base_tag = train_tag
  elif not train_optional:
    raise DataError(
        f'Missing the training folder in {dataset_dir}. Expected:\n'
        + _expected_listing(dataset_dir, name, base_tag, length, test=False)
        + '\n' + GETTING_DATA_HINT)

  if test_folder is None:
    raise DataError(
        f'Missing the test folder in {dataset_dir}. Expected:\n'
        + _expected_listing(dataset_dir, name, base_tag, length, train=False)
        + '\n' + GETTING_DATA_HINT)
  test_splits = _load_test_splits(test_folder, name, base_tag, length)
  if condition_pair is not None:
    test_splits = _select_conditions(test_splits, condition_pair, test_folder)
  for split_name, split in test_splits.items():
    if split_name in splits:
      raise DataError(
          f'{test_folder}: a test split is named {split_name!r}, which is '
          'reserved for the training folder; rename it')
    splits[split_name] = split

  _check_same_joint_count(splits, dataset_dir)
  recording_ids.check_walks_in_one_split(
      {name: split.recordings for name, split in splits.items()},
      f'{dataset_dir} (its recordings_<TAG>_{length}.npy files)')
  num_joints = next(iter(splits.values())).sequences.shape[2]
  layout = joints.layout_for_num_joints(num_joints)
  return SkeletonDataset(
      name=name,
      length=length,
      splits=order_splits(splits),
      joint_names=layout.joint_names if layout else None,
      bones=layout.bones if layout else None,
      source=str(dataset_dir))


def order_splits(splits: Mapping[str, SkeletonSplit]) -> dict[str, SkeletonSplit]:
  """Splits in report order: train, test, Walking, Still, A, B, gallery, probe, rest."""
  def key(split_name):
    if split_name in _SPLIT_ORDER:
      return (_SPLIT_ORDER.index(split_name), split_name)
    return (len(_SPLIT_ORDER), split_name)
  return {split_name: splits[split_name] for split_name in sorted(splits, key=key)}


# ---------------------------------------------------------------- folders


def _subdirs(folder: pathlib.Path) -> list[pathlib.Path]:
  return sorted(p for p in folder.iterdir() if p.is_dir())


def _is_data_folder(folder: pathlib.Path) -> bool:
  return folder.name.endswith('train_npy_data') or folder.name.endswith(
      'test_npy_data')


def _listing(items: Iterable[str]) -> str:
  items = list(items)
  if not items:
    return '(none)'
  shown = ', '.join(items[:_MAX_LISTED])
  return shown + (f', ... ({len(items)} in all)' if len(items) > _MAX_LISTED else '')


def _length_dir(root: pathlib.Path, name: str, length: int) -> pathlib.Path:
  """<root>/<name>/<length>, with errors that list what exists instead."""
  if root.exists() and not root.is_dir():
    raise DataError(f'Data root {root} (config.data.root) is a file, not the '
                    "folder holding the authors' <name>/<length>/ layout.")
  if not root.is_dir():
    tag = _TAG_ALIASES.get(name, name)
    raise DataError(
        f'Data root {root} does not exist (config.data.root). Expected the '
        f"authors' layout {root}/{name}/{length}/{tag}_train_npy_data/"
        f'source_x_{tag}_{length}.npy and so on. ' + GETTING_DATA_HINT)
  dataset_root = root / name
  if not dataset_root.is_dir():
    available = [p.name for p in _subdirs(root)]
    raise DataError(
        f'Unknown dataset {name!r} (config.data.name): {dataset_root} does not '
        f'exist. Datasets in {root}: {_listing(available)}. ' + GETTING_DATA_HINT)
  length_dir = dataset_root / str(length)
  if not length_dir.is_dir():
    available = sorted((p.name for p in _subdirs(dataset_root)),
                       key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))
    raise DataError(
        f'No folder for sequence length f={length} (config.data.length): '
        f'{length_dir} does not exist. Lengths on disk for {name}: '
        f'{_listing(available)}. Set --config.data.length to one of them.')
  return length_dir


def _resolve_view(length_dir: pathlib.Path, name: str, view: str
                  ) -> tuple[pathlib.Path, Optional[tuple[str, str]]]:
  """The folder holding the data folders, and a CME condition pair if one applies.

  The pair is returned only for the condition-folder CME layout, where the
  probe/gallery folders are picked inside the test folder.
  """
  view_dirs = [p.name for p in _subdirs(length_dir) if not _is_data_folder(p)]
  has_data_here = any(_is_data_folder(p) for p in _subdirs(length_dir))
  if not view:
    if not has_data_here and view_dirs:
      raise DataError(
          f'{length_dir} has per-view folders and no data folder of its own; set '
          f'--config.data.view to one of: {_listing(view_dirs)}.')
    return length_dir, None

  candidates = [view]
  if not view.startswith('view_') and not _CONDITION_PAIR.match(view):
    candidates.append(f'view_{view}')
  for candidate in candidates:
    if (length_dir / candidate).is_dir():
      return length_dir / candidate, None

  pair = _CONDITION_PAIR.match(view)
  test_folder = _find_data_folder(length_dir, name, train=False)
  if pair and test_folder is not None:
    conditions = [p.name for p in _subdirs(test_folder)]
    if conditions:
      return length_dir, (pair.group(1), pair.group(2))
  conditions_note = ''
  if test_folder is not None and _subdirs(test_folder):
    conditions_note = (
        f'; condition folders in {test_folder}: '
        f'{_listing(p.name for p in _subdirs(test_folder))}')
  raise DataError(
      f'Unknown view {view!r} (config.data.view): no folder '
      f'{" or ".join(str(length_dir / c) for c in candidates)}. View folders in '
      f'{length_dir}: {_listing(view_dirs)}{conditions_note}. Use '
      f"--config.data.view='' when the data has no view folders.")


def _find_data_folder(dataset_dir: pathlib.Path, name: str, *, train: bool
                      ) -> Optional[pathlib.Path]:
  """<name>_{train,test}_npy_data or the SPC-MGR {train,test}_npy_data, if any."""
  plain = 'train_npy_data' if train else 'test_npy_data'
  found = [p for p in _subdirs(dataset_dir)
           if p.name == plain or p.name.endswith('_' + plain)]
  if len(found) <= 1:
    return found[0] if found else None
  for preferred in (_data_folder_name(name, train),
                    _data_folder_name(_TAG_ALIASES.get(name, name), train), plain):
    for folder in found:
      if folder.name == preferred:
        return folder
  raise DataError(
      f'{dataset_dir} has several {plain} folders: '
      f'{_listing(p.name for p in found)}; keep only '
      f'{_data_folder_name(name, train)}.')


def _expected_listing(dataset_dir: pathlib.Path, name: str, tag: str, length: int,
                      *, train: bool = True, test: bool = True) -> str:
  lines = []
  folder_prefix = _TAG_ALIASES.get(name, name)
  if train:
    folder = dataset_dir / _data_folder_name(folder_prefix, True)
    lines += [f'  {folder / f"source_{a}_{tag}_{length}.npy"}' for a in AXES]
    lines.append(f'  {folder / f"ids_{tag}_{length}.npy"}')
  if test:
    folder = dataset_dir / _data_folder_name(folder_prefix, False)
    lines += [f'  {folder / f"t_source_{a}_{tag}_{length}.npy"}' for a in AXES]
    lines.append(f'  {folder / f"ids_{tag}_{length}.npy"}')
  return '\n'.join(lines)


# ---------------------------------------------------------------- tags


def _tags_in_folder(folder: pathlib.Path, prefix: str, length: int) -> list[str]:
  """File tags T of ``<prefix>source_x_<T>_<length>.npy`` files in ``folder``."""
  head, tail = f'{prefix}source_x_', f'_{length}.npy'
  return sorted(p.name[len(head):-len(tail)]
                for p in folder.glob(f'{head}*{tail}')
                if len(p.name) > len(head) + len(tail))


def _npy_files(folder: pathlib.Path) -> list[str]:
  return sorted(p.name for p in folder.glob('*.npy'))


def _choose_tag(folder: pathlib.Path, prefix: str, length: int,
                preferred: Sequence[str]) -> str:
  """The single file tag of a split folder (preferring the dataset's own)."""
  tags = _tags_in_folder(folder, prefix, length)
  if len(tags) == 1:
    return tags[0]
  for tag in preferred:
    if tag in tags:
      return tag
  if not tags:
    raise DataError(
        f'No {prefix}source_x_<TAG>_{length}.npy file in {folder} (expected e.g. '
        f'{folder / f"{prefix}source_x_{preferred[0]}_{length}.npy"}). .npy files '
        f'there: {_listing(_npy_files(folder))}. If they are for another sequence '
        f'length, set --config.data.length accordingly. ' + GETTING_DATA_HINT)
  raise DataError(
      f'{folder} holds files for several tags ({_listing(tags)}); expected one '
      f'set of {prefix}source_{{x,y,z}}_<TAG>_{length}.npy files.')


def _default_test_split_name(name: str, base_tag: str) -> str:
  return 'Walking' if 'BIWI' in (name, base_tag) else 'test'


def _load_test_splits(test_folder: pathlib.Path, name: str, base_tag: str,
                      length: int) -> dict[str, SkeletonSplit]:
  """Test splits from tagged files in ``test_folder`` and from its sub-folders."""
  splits: dict[str, SkeletonSplit] = {}
  origins: dict[str, pathlib.Path] = {}

  def add(split_name, folder, tag):
    if split_name in splits:
      raise DataError(
          f'Test split {split_name!r} found twice: in {origins[split_name]} and '
          f'in {folder} (tag {tag!r}); keep one of them.')
    splits[split_name] = _load_split(folder, 't_', tag, length)
    origins[split_name] = folder

  direct_tags = _tags_in_folder(test_folder, 't_', length)
  if direct_tags:
    base = _test_base_tag(direct_tags, (base_tag, name, _TAG_ALIASES.get(name, name)))
    for tag in direct_tags:
      if tag == base:
        add(_default_test_split_name(name, base), test_folder, tag)
      elif tag.startswith(base + '-'):
        add(tag[len(base) + 1:], test_folder, tag)
      else:
        raise DataError(
            f'{test_folder / f"t_source_x_{tag}_{length}.npy"}: file tag '
            f'{tag!r} does not belong to dataset tag {base!r} (expected '
            f'{base!r} or {base + "-<split>"!r}). Remove or rename the file.')

  for sub in _subdirs(test_folder):
    if _tags_in_folder(sub, 't_', length):
      tag = _choose_tag(sub, 't_', length, (base_tag, name))
      add(sub.name, sub, tag)

  if not splits:
    raise DataError(
        f'No test files in {test_folder}: expected '
        f'{test_folder / f"t_source_x_{base_tag}_{length}.npy"} (and y, z, ids) '
        f'or split sub-folders holding such files. .npy files there: '
        f'{_listing(_npy_files(test_folder))}; sub-folders: '
        f'{_listing(p.name for p in _subdirs(test_folder))}. ' + GETTING_DATA_HINT)
  return splits


def _test_base_tag(tags: Sequence[str], preferred: Sequence[str]) -> str:
  """The tag the test files' split suffixes hang off (IAS for IAS-A, IAS-B)."""
  for candidate in preferred:
    if any(t == candidate or t.startswith(candidate + '-') for t in tags):
      return candidate
  stems = {t.split('-')[0] for t in tags}
  if len(stems) == 1:
    return stems.pop()
  return tags[0]


def _select_conditions(splits: Mapping[str, SkeletonSplit],
                       pair: tuple[str, str],
                       test_folder: pathlib.Path) -> dict[str, SkeletonSplit]:
  """CASIA-B CME: condition folders -> ``probe`` and ``gallery`` splits."""
  probe, gallery = pair
  missing = [c for c in (probe, gallery) if c not in splits]
  if missing:
    raise DataError(
        f'Unknown CASIA-B condition(s) {", ".join(map(repr, missing))} in '
        f"config.data.view='{probe}.{gallery}' (<probe>.<gallery>): condition "
        f'folders in {test_folder}: {_listing(sorted(splits))}.')
  return {'gallery': splits[gallery], 'probe': splits[probe]}


# ---------------------------------------------------------------- arrays


def _load_split(folder: pathlib.Path, prefix: str, tag: str,
                length: int) -> SkeletonSplit:
  """Reads x/y/z sources and ids of one split; checks targets when present."""
  source_paths = [folder / f'{prefix}source_{a}_{tag}_{length}.npy' for a in AXES]
  ids_path = folder / f'ids_{tag}_{length}.npy'
  for path in source_paths + [ids_path]:
    input_files.require_regular_file(path, 'split file')
  missing = [p for p in source_paths + [ids_path] if not p.exists()]
  if missing:
    raise DataError(
        'Missing file(s):\n' + '\n'.join(f'  {p}' for p in missing)
        + f'\n(one split needs {prefix}source_{{x,y,z}}_{tag}_{length}.npy and '
        f'ids_{tag}_{length}.npy in {folder}). ' + GETTING_DATA_HINT)

  _require_split_fits(source_paths, folder)
  axis_series = [_read_axis_file(p, length) for p in source_paths]
  shapes = {p.name: s.shape for p, s in zip(source_paths, axis_series)}
  if len(set(shapes.values())) != 1:
    raise DataError(
        f'The x/y/z files in {folder} disagree in shape ([N, f, J] after '
        f'reshaping): {shapes}. They must hold the same sequences; re-export them '
        'together.')
  sequences = np.stack(axis_series, axis=-1)

  for axis_index, axis in enumerate(AXES):
    target_path = folder / f'{prefix}target_{axis}_{tag}_{length}.npy'
    if target_path.exists():
      _check_target(target_path, axis_series[axis_index], length)

  labels = labels_from_ids(read_ids_file(ids_path), sequences.shape[0], ids_path)
  recordings_path = folder / recording_ids.recordings_file_name(tag, length)
  recordings = recording_ids.read_recordings_file(recordings_path, labels.size)
  if recordings is not None:
    recording_ids.check_recordings_file(recordings_path, recordings, labels)
  return SkeletonSplit(sequences=sequences, labels=labels,
                       recordings=recordings)


def _require_split_fits(source_paths: Sequence[pathlib.Path],
                        folder: pathlib.Path) -> None:
  """Refuses a split whose x/y/z files cannot be read into memory: the files
  as stored, plus their float32 [N, f, J, 3] stack (from the headers only)."""
  try:
    shapes = [input_files.array_headers(p)[''] for p in source_paths]
  except Exception:  # pylint: disable=broad-except
    return  # a damaged header: _load_npy names the file
  values = sum(int(np.prod(shape, dtype=object)) for shape, _ in shapes)
  memory.require_fits(
      sum(int(np.prod(shape, dtype=object)) * dtype.itemsize
          for shape, dtype in shapes) + values * 4,
      f'Reading the x/y/z files in {folder} ({values} values)',
      'Use a machine with more memory, or fewer sequences in that folder '
      '(config.data.max_sequences caps a split only once it is read).')


def _load_npy(path: pathlib.Path):
  """A pickle-free .npy file (ids files go through ``safe_pickle``)."""
  input_files.require_regular_file(path, '.npy file')
  try:
    return np.load(path, allow_pickle=False)
  except Exception as error:  # numpy raises ValueError/OSError/EOFError/...
    raise DataError(
        f'Cannot read {path}: {type(error).__name__}: {error}. The file is '
        'corrupt or not a .npy file; download or rebuild it.') from error


def _read_axis_file(path: pathlib.Path, length: int) -> np.ndarray:
  """One coordinate file -> [N, f, J] float32, checked for shape and finiteness."""
  raw = _load_npy(path)
  if not isinstance(raw, np.ndarray) or not (
      np.issubdtype(raw.dtype, np.floating) or np.issubdtype(raw.dtype, np.integer)):
    raise DataError(
        f'{path}: expected a numeric array, got '
        f'{getattr(raw, "dtype", type(raw).__name__)}.')
  if np.issubdtype(raw.dtype, np.integer):
    logging.warning('[data] %s', integer_coordinates_warning(str(path), raw.dtype))
  if raw.ndim in (2, 3) and raw.shape[-1] == 0:
    raise DataError(f'{path}: shape {raw.shape} holds no joints (J=0); rebuild '
                    'the file.')
  if raw.ndim == 2:
    rows, num_joints = raw.shape
    if rows == 0:
      raise DataError(f'{path} is empty: it holds no sequences (0 rows). '
                      'Rebuild the split, or drop it with config.data.probe.')
    if rows % length:
      raise DataError(
          f'{path}: {rows} rows is not a positive multiple of f={length} '
          f'(config.data.length), so the file does not hold {length}-frame '
          f'sequences. Check that the folder matches the length.')
    series = raw.reshape(rows // length, length, num_joints)
  elif raw.ndim == 3:
    if raw.shape[0] == 0:
      raise DataError(f'{path} is empty: shape {raw.shape} holds no sequences. '
                      'Rebuild the split, or drop it with config.data.probe.')
    if raw.shape[1] != length:
      raise DataError(
          f'{path}: shape {raw.shape} holds sequences of f={raw.shape[1]} '
          f'frames, but config.data.length={length}.')
    series = raw
  else:
    raise DataError(
        f'{path}: expected [N*f, J] or [N, f, J], got shape {raw.shape}.')
  finite = np.isfinite(raw)
  if not finite.all():
    first_bad = tuple(int(i) for i in np.argwhere(~finite)[0])
    if raw.ndim == 2:
      where = (f'[row, joint]; sequence {first_bad[0] // length}, frame '
               f'{first_bad[0] % length}, joint {first_bad[1]}')
    else:
      where = '[sequence, frame, joint]'
    raise DataError(
        f'{path}: {int((~finite).sum())} NaN/Inf value(s); the first at index '
        f'{first_bad} {where} (value {raw[first_bad]}). Rebuild the file or '
        'drop the bad sequences.')
  return series.astype(np.float32, copy=False)


def _check_target(path: pathlib.Path, source: np.ndarray, length: int) -> None:
  """The target file must hold the sources reversed in time."""
  target = _read_axis_file(path, length)
  if target.shape != source.shape:
    raise DataError(
        f'{path}: shape {target.shape} ([N, f, J]) differs from its source '
        f'file {source.shape}; the target file belongs to other data.')
  reversed_source = source[:, ::-1]
  close = np.isclose(target, reversed_source, rtol=1e-5, atol=1e-6)
  if not close.all():
    sequence = int(np.argwhere(~close)[0][0])
    raise DataError(
        f'{path} is not its source file reversed in time (first mismatch in '
        f'sequence {sequence}). The source and target files come from different '
        'exports; use matching files (targets are optional: delete them to load '
        'the sources alone).')


def _as_person_id(key, path: pathlib.Path) -> int:
  if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
    return int(key)
  if isinstance(key, str) and re.fullmatch(r'-?\d+', key.strip()):
    return int(key)
  raise DataError(
      f'{path}: person id {key!r} is not an integer; the ids dict must map '
      'integer person ids to sequence indices.')


def labels_from_ids(ids: Mapping, num_sequences: int,
                    path: str | pathlib.Path) -> np.ndarray:
  """Turns the authors' ``{person: [sequence indices]}`` into labels [N] int64.

  Raises:
    DataError (naming ``path``) unless every index 0..N-1 appears exactly once.
  """
  path = pathlib.Path(path)
  labels = np.zeros(num_sequences, dtype=np.int64)
  owner: dict[int, int] = {}
  for key, indices in ids.items():
    person = _as_person_id(key, path)
    indices = np.asarray(indices).reshape(-1)
    if indices.size and not np.issubdtype(indices.dtype, np.integer):
      raise DataError(
          f'{path}: person {person} has non-integer sequence indices '
          f'({indices.dtype}).')
    for index in indices.tolist():
      if not 0 <= index < num_sequences:
        raise DataError(
            f'{path}: person {person} lists sequence index {index}, but the '
            f'source files hold {num_sequences} sequences (0..{num_sequences - 1}).'
            ' The ids file belongs to other data.')
      if index in owner:
        raise DataError(
            f'{path}: sequence index {index} is listed twice (persons '
            f'{owner[index]} and {person}); each sequence has one person.')
      owner[index] = person
      labels[index] = person
  if len(owner) != num_sequences:
    assigned = np.zeros(num_sequences, dtype=bool)
    assigned[list(owner)] = True
    missing = np.flatnonzero(~assigned)
    raise DataError(
        f'{path}: lists {len(owner)} sequence indices but the source files hold '
        f'{num_sequences} sequences; {missing.size} have no person (first: '
        f'{missing[:5].tolist()}). The ids file belongs to other data.')
  return labels


def _check_same_joint_count(splits: Mapping[str, SkeletonSplit],
                            dataset_dir: pathlib.Path) -> None:
  counts = {n: s.sequences.shape[2] for n, s in splits.items()}
  if len(set(counts.values())) > 1:
    raise DataError(
        f'Splits in {dataset_dir} disagree on the number of joints J: {counts}. '
        'All splits of a dataset must use the same skeleton.')
