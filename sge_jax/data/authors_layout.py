"""The authors' preprocessed .npy layout (docs/method.md §2.2): finding the
dataset's folders, files and splits, and loading them (``load_authors_dataset``).
One split's files are read in ``authors_arrays``; ``authors_writer`` writes them.

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

import pathlib
import re
from typing import Iterable, Mapping, Optional, Sequence

from sge_jax.data import joints
from sge_jax.data import recording_ids
from sge_jax.data.authors_arrays import AXES, GETTING_DATA_HINT, load_split
from sge_jax.data.authors_writer import data_folder_name
from sge_jax.data.dataset import SkeletonDataset, SkeletonSplit
from sge_jax.errors import DataError

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
    splits['train'] = load_split(train_folder, '', train_tag, length)
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
  for preferred in (data_folder_name(name, train),
                    data_folder_name(_TAG_ALIASES.get(name, name), train), plain):
    for folder in found:
      if folder.name == preferred:
        return folder
  raise DataError(
      f'{dataset_dir} has several {plain} folders: '
      f'{_listing(p.name for p in found)}; keep only '
      f'{data_folder_name(name, train)}.')


def _expected_listing(dataset_dir: pathlib.Path, name: str, tag: str, length: int,
                      *, train: bool = True, test: bool = True) -> str:
  lines = []
  folder_prefix = _TAG_ALIASES.get(name, name)
  if train:
    folder = dataset_dir / data_folder_name(folder_prefix, True)
    lines += [f'  {folder / f"source_{a}_{tag}_{length}.npy"}' for a in AXES]
    lines.append(f'  {folder / f"ids_{tag}_{length}.npy"}')
  if test:
    folder = dataset_dir / data_folder_name(folder_prefix, False)
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
    splits[split_name] = load_split(folder, 't_', tag, length)
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


def _check_same_joint_count(splits: Mapping[str, SkeletonSplit],
                            dataset_dir: pathlib.Path) -> None:
  counts = {n: s.sequences.shape[2] for n, s in splits.items()}
  if len(set(counts.values())) > 1:
    raise DataError(
        f'Splits in {dataset_dir} disagree on the number of joints J: {counts}. '
        'All splits of a dataset must use the same skeleton.')
