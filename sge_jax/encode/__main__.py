r"""Encodes new data with a finished run's encoders.

Usage::

  python -m sge_jax.encode --workdir=RUN --data=FILE_OR_FOLDER --out=OUT.npz \
      [--split_field=FIELD [--train_values=1-10]] [--dataset=DS] [--view=V] \
      [--name=NAME] [--seed=S]

``--data`` is a generic skeleton .npz (docs/data.md: every recording, in one
split ``data``, or one split per value of ``seq_<split_field>``, or with
``--train_values`` the run's ``train``/``test`` split) or a folder in the
authors' layout (``<root>/<DS>/<f>``, ``<root>/<DS>``, or ``<root>`` with
``--dataset=<DS>``; every split found). The recordings are cut into the run's
f-frame windows, normalised as the run's data were, and encoded with the
run's encoders (a transfer run's: those it used), as its encode stage does.
``OUT.npz`` has the ``encodings.npz`` format (``sge_jax.encode.encodings``),
with ``source_run`` and ``source_config_hash`` naming the run; it is written
atomically, and never over a file of the run, the data, or a file this
command did not write (rerunning the same command replaces its own). A
multi-seed workdir needs ``--seed``. Progress lines with an ETA appear on
long files.
"""

from __future__ import annotations

import logging
from typing import Sequence

from absl import app, flags

from sge_jax import cli
from sge_jax.encode import new_data

_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Workdir of a finished run (its config.json and '
    'checkpoints/, or seed_<s>/ sub-directories with --seed).')
_DATA = flags.DEFINE_string(
    'data', None, "A generic skeleton .npz file, or a folder in the authors' "
    'layout (<root>/<DS>/<f>, <root>/<DS>, or <root> with --dataset).')
_OUT = flags.DEFINE_string(
    'out', None, 'The encodings file to write (.npz, the encodings.npz '
    'format); never a file of the run.')
for _name in ('workdir', 'data', 'out'):
  flags.mark_flag_as_required(_name)
_SEED = flags.DEFINE_integer(
    'seed', None, 'The seed whose encoders to use, in a multi-seed workdir.')
_SPLIT_FIELD = flags.DEFINE_string(
    'split_field', '', 'Generic .npz: the per-recording field seq_<field> '
    "whose values make the splits (<field>_<value>); '' = one split 'data'.")
_TRAIN_VALUES = flags.DEFINE_string(
    'train_values', '', "Generic .npz, with --split_field: the values that "
    "form 'train' (e.g. 1-10), the others 'test', as a run's "
    'data.train_values.')
_DATASET = flags.DEFINE_string(
    'dataset', '', "Authors' layout: the dataset folder under the data root "
    '--data (e.g. KGBD).')
_VIEW = flags.DEFINE_string(
    'view', '', "Authors' layout: the view folder or CASIA-B CME condition "
    'pair, as data.view.')
_NAME = flags.DEFINE_string(
    'name', '', 'The dataset name recorded in the file (default: the file '
    'or dataset folder name).')


def _encode() -> None:
  options = new_data.DataOptions(
      split_field=_SPLIT_FIELD.value, train_values=_TRAIN_VALUES.value,
      dataset=_DATASET.value, view=_VIEW.value, name=_NAME.value)
  encoding_set, out = new_data.encode_file(_WORKDIR.value, _DATA.value,
                                           _OUT.value, options, _SEED.value)
  meta = encoding_set.metadata
  splits = ', '.join(f'{name} ({int((encoding_set.split == name).sum())})'
                     for name in encoding_set.split_names)
  print(f'Wrote {out}: {encoding_set.encodings.shape[0]} sequences of '
        f'{meta.dataset} ({splits}), CAGEs [f={meta.length}, '
        f'D={encoding_set.encodings.shape[2]}], with the encoders of '
        f'{meta.source_run} (config_hash {meta.source_config_hash}, '
        f'normalization {meta.normalization}).')


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    cli.exit_with_user_error(f'unexpected arguments: {" ".join(argv[1:])}',
                             flags_hint=True)
  logging.getLogger().setLevel(logging.INFO)
  cli.quiet_libraries()
  cli.exit_on_user_error(
      _encode, interrupted_hint='--out is as it was; run the same command '
      'again')


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
