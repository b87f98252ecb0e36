"""New data encoded with a finished run's encoders, to an encodings file
(``python -m sge_jax.encode``).

``encode_file(workdir, data, out)`` reads ``data`` (a generic skeleton .npz,
``sge_jax.data.npz_format``, or a folder in the authors' layout,
``sge_jax.data.authors_layout``) cut into the run's f-frame windows, encodes
every split as the run's encode stage would (``Encoder.encode_dataset``:
the run's normalisation, its encoders) and writes ``out`` in the
``encodings.npz`` format, naming the run as ``source_run``.

``out`` never replaces a file of a run (its encodings.npz, rn.npz, ...: of
the run given or of any folder holding a run's config.json), the data, or any
file this command did not write: rerunning the same command
replaces the file it wrote before, atomically (an interrupted write leaves the
previous version).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
from typing import Optional

from sge_jax import interrupts
from sge_jax import workdir as workdir_lib
from sge_jax.data import input_files
from sge_jax.data.authors_layout import load_authors_dataset
from sge_jax.data.dataset import SkeletonDataset
from sge_jax.data.npz_format import load_npz_dataset, load_npz_recordings
from sge_jax.data.units import unit_warnings
from sge_jax.encode import api
from sge_jax.encode.encodings import EncodingSet, save_encodings
from sge_jax.encode.stage import encoder_source
from sge_jax.errors import ConfigError, DataError
from sge_jax.train.checkpoints import has_checkpoints
from sge_jax.train.setup import no_trained_encoders

# The files of a run directory an encodings file written here must not replace.
RUN_FILES = (workdir_lib.CONFIG_FILE, workdir_lib.METRICS_FILE,
             workdir_lib.ENCODINGS_FILE, workdir_lib.RESULTS_FILE,
             workdir_lib.REPORT_FILE, workdir_lib.RN_FILE)
# A field only files this command writes have (EncodingMetadata.source_run).
_WRITTEN_HERE = 'source_run'


@dataclasses.dataclass(frozen=True)
class DataOptions:
  """How to read ``--data``.

  Attributes:
    split_field: generic .npz: the per-recording field ``seq_<field>`` whose
      values make the splits ('' = one split ``data``).
    train_values: generic .npz: with ``split_field``, the values that form
      ``train`` (the others ``test``), as a run's ``data.train_values``.
    dataset: authors' layout: the dataset folder under the data root.
    view: authors' layout: the view folder or CME condition pair.
    name: the dataset name recorded (default: the file or dataset folder).
  """
  split_field: str = ''
  train_values: str = ''
  dataset: str = ''
  view: str = ''
  name: str = ''


def encode_file(workdir: str | os.PathLike[str], data: str | os.PathLike[str],
                out: str | os.PathLike[str], options: DataOptions = DataOptions(),
                seed: Optional[int] = None) -> tuple[EncodingSet, pathlib.Path]:
  """Encodes ``data`` with the encoders of the run in ``workdir`` into ``out``.

  Returns:
    (the encodings written, the path of ``out``).

  Raises:
    ConfigError: a bad ``out`` or option (the message names the flag).
    DataError: missing or malformed data, data of another J or f than the
      run's, not a finished run (``load_encoder``).
    WorkdirError: ``out`` cannot be written (the previous version is kept).
  """
  data, out = pathlib.Path(data), pathlib.Path(out)
  check_data(data)
  check_out(out, data)
  run_dir = api.run_directory(pathlib.Path(workdir), seed)
  run = api.saved_run(run_dir)
  source = encoder_source(run, run_dir)
  check_out_spares_runs(out, {run_dir, source})
  check_out_replaceable(out)
  if not has_checkpoints(source / workdir_lib.CHECKPOINT_DIR):
    raise no_trained_encoders(source)     # before a long read of the data
  # Read before the checkpoints are restored: a mistake in the data shows at once.
  dataset = read_data(data, run.data.length, options)
  encoder = api.load_encoder(workdir, seed)
  for warning in unit_warnings(dataset):
    logging.warning('[data] %s', warning)
  encoding_set = encoder.encode_dataset(dataset)
  interrupts.raise_if_requested()   # a Ctrl-C the loops could not see
  save_encodings(out, encoding_set)
  return encoding_set, out


# ----------------------------------------------------------------- --out


def check_out(out: pathlib.Path, data: pathlib.Path) -> None:
  """Refuses an ``out`` that is not an ``.npz`` file in an existing folder:
  a directory, something other than a regular file, or the data."""
  kind = input_files.not_regular(out)
  if kind:
    raise ConfigError(f'--out={out} is {kind}: give the path of the .npz '
                      'file to write (e.g. --out=my_encodings.npz).')
  if out.suffix != '.npz':
    raise ConfigError(f'--out={out} must name an .npz file (e.g. '
                      '--out=my_encodings.npz).')
  if not out.parent.is_dir():
    raise ConfigError(f'--out={out}: the folder {out.parent} does not exist; '
                      'create it first.')
  if data.exists() and out.exists() and os.path.samefile(out, data):
    raise ConfigError(f'--out={out} is the --data file: give another --out.')


def check_out_replaceable(out: pathlib.Path) -> None:
  """Refuses an existing ``out`` that this command did not write (rerunning
  the command replaces its own file)."""
  if out.exists() and not _written_here(out):
    raise ConfigError(
        f'--out={out} exists and is not an encodings file written by python '
        '-m sge_jax.encode; it would be replaced. Give another --out, or move '
        'that file away.')


def _written_here(path: pathlib.Path) -> bool:
  """Whether ``path`` is an encodings file this command wrote (its header
  has ``source_run``); False for any other or unreadable file."""
  try:
    headers = input_files.array_headers(path)
  except Exception:  # pylint: disable=broad-except  # not an .npz at all
    return False
  return 'encodings' in headers and _WRITTEN_HERE in headers


def check_out_spares_runs(out: pathlib.Path,
                          run_dirs: set[pathlib.Path]) -> None:
  """Refuses an ``out`` that names one of the files of a run directory
  (``RUN_FILES``): of one in ``run_dirs`` (the run's, its encoders'), even
  before they exist (the run would write them), or of any folder holding a
  run's config.json (a transfer run's encodings.npz names a ``source_run``
  too, like the files written here); or one that lies in the checkpoints of
  such a run."""
  target = out.absolute().resolve()
  run_dirs = {run_dir.absolute().resolve() for run_dir in run_dirs}
  if target.name in RUN_FILES and (
      target.parent in run_dirs
      or (target.parent / workdir_lib.CONFIG_FILE).exists()):
    raise ConfigError(
        f'--out={out} is the run\'s own {target.name} in {target.parent}: '
        'this command never replaces it. Give another --out (e.g. '
        f'{target.parent / "encodings_new.npz"}).')
  for folder in target.parents:
    run_dir = folder.parent
    if folder.name == workdir_lib.CHECKPOINT_DIR and (
        run_dir in run_dirs or (run_dir / workdir_lib.CONFIG_FILE).exists()):
      raise ConfigError(f'--out={out} lies in the checkpoints of {run_dir}: '
                        'give another --out.')


# ----------------------------------------------------------------- --data


def read_data(data: pathlib.Path, length: int,
              options: DataOptions) -> SkeletonDataset:
  """The dataset in ``data``, cut into f = ``length`` windows.

  ``data`` is a generic .npz (``load_npz_recordings``, or with
  ``train_values`` ``load_npz_dataset``) or a folder in the authors' layout:
  ``<root>/<DS>/<f>``, ``<root>/<DS>``, or ``<root>`` with
  ``options.dataset``; every split found there is read.

  Raises:
    ConfigError: options that do not fit the kind of data.
    DataError: missing, unreadable or malformed data; a folder of another f.
  """
  check_data(data)
  if data.is_dir():
    dataset = _read_authors_folder(data, length, options)
  else:
    dataset = _read_npz_file(data, length, options)
  if options.name:
    dataset = dataclasses.replace(dataset, name=options.name)
  return dataset


def check_data(data: pathlib.Path) -> None:
  """DataError unless ``data`` is a regular file or a folder."""
  if not data.exists():
    raise DataError(f'--data={data} does not exist: give a generic skeleton '
                    ".npz file or a folder in the authors' layout.")
  kind = input_files.not_regular(data)
  if kind and not data.is_dir():
    raise DataError(f'--data={data} is {kind}, not a regular file: give a '
                    "generic skeleton .npz file or a folder in the authors' "
                    'layout.')


def _read_npz_file(data: pathlib.Path, length: int,
                   options: DataOptions) -> SkeletonDataset:
  if options.dataset or options.view:
    raise ConfigError(f'--dataset and --view name folders of the authors\' '
                      f'layout; --data={data} is a file.')
  if options.train_values:
    if not options.split_field:
      raise ConfigError('--train_values needs --split_field (the field whose '
                        'values it lists, e.g. --split_field=trial).')
    return load_npz_dataset(data, length, options.split_field,
                            options.train_values)
  return load_npz_recordings(data, length, options.split_field)


def _read_authors_folder(data: pathlib.Path, length: int,
                         options: DataOptions) -> SkeletonDataset:
  if options.split_field or options.train_values:
    raise ConfigError(f'--split_field and --train_values apply to a generic '
                      f'.npz; --data={data} is a folder (the authors\' '
                      'layout, whose splits are its folders).')
  root, name = _authors_root_and_name(data, length, options.dataset)
  return load_authors_dataset(root, name, length, options.view)


def _authors_root_and_name(data: pathlib.Path, length: int,
                           dataset: str) -> tuple[pathlib.Path, str]:
  """(data root, dataset folder name) of ``data``: ``<root>/<DS>/<f>``,
  ``<root>/<DS>`` or ``<root>`` with ``--dataset=<DS>``."""
  if data.name.isdigit() and not dataset:
    if int(data.name) != length:
      raise DataError(
          f'--data={data} holds sequences of f={data.name} frames; the run '
          f'encodes f={length}: give {data.parent / str(length)}.')
    return data.parent.parent, data.parent.name
  if dataset:
    if dataset in ('', '.', '..') or '/' in dataset:
      raise ConfigError(f'--dataset={dataset!r} must name one folder under '
                        f'--data={data}.')
    return data, dataset
  if (data / str(length)).is_dir():
    return data.parent, data.name
  raise DataError(
      f"--data={data} is a folder, but not one in the authors' layout for "
      f'f={length}: give <root>/<DS>/{length}, <root>/<DS> (it holds no '
      f'folder {length}/), or the data root with --dataset=<DS>.')
