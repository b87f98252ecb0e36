"""Command line: ``python -m sge_jax.preprocess --dataset=KGBD --raw=PATH ...``.

Reads an original dataset download and writes the authors' preprocessed layout
(docs/method.md §2.2) under ``--out`` plus a ``manifest.json``; see ``sge_jax.preprocess``.
Exit status 0 on success, 2 on a usage, configuration or data error (the message
says what was expected).
"""

from __future__ import annotations

import argparse
import os
import pathlib
from typing import Optional, Sequence

from absl import logging

from sge_jax import cli
from sge_jax.errors import ConfigError
from sge_jax.preprocess import pipeline
from sge_jax.preprocess import recordings as rec_lib


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m sge_jax.preprocess',
      description=(
          "Turn an original KGBD / BIWI / IAS-Lab / KS20 download into the "
          "authors' preprocessed .npy layout (Datasets/<DS>/<f>/...) and a "
          "SPC-MGR-style copy with test sub-folders (<out>/spc_mgr/...), with "
          "a manifest.json of what was read, dropped and written."))
  parser.add_argument('--dataset', required=True, choices=pipeline.DATASETS)
  parser.add_argument(
      '--raw', required=True,
      help='folder of the original download (KGBD: holding "kinect gait raw '
      'dataset"; BIWI: Training/ and Testing/; IAS: Training/, TestingA/, '
      'TestingB/; KS20: the .mat files)')
  parser.add_argument('--out', default='Datasets',
                      help='Datasets root to write into (default: Datasets)')
  parser.add_argument('--length', type=int, default=6,
                      choices=rec_lib.SUPPORTED_LENGTHS,
                      help='frames per sequence, f (default: 6)')
  parser.add_argument('--seed', type=int, default=0,
                      help='seed of the KGBD/KS20 gallery/probe draw '
                      '(default: 0)')
  parser.add_argument('--overwrite', action='store_true',
                      help='replace existing data folders of this dataset '
                      'and length')
  parser.add_argument('--quiet', action='store_true',
                      help='no per-person progress lines')
  return parser


def _summary_lines(result: pipeline.Result) -> list[str]:
  summary = result.manifest.summary()
  lines = [
      f'{result.manifest.dataset}, f={result.manifest.length}, '
      f'seed={result.manifest.seed}: {summary["people"]} people, '
      f'{summary["recordings_used"]} recordings used, '
      f'{summary["recordings_skipped"]} too short, '
      f'{summary["sources_skipped"]} unreadable/empty sources skipped',
      f'frames read {summary["frames_read"]}; dropped while reading '
      f'{sum(summary["frames_dropped_reading"].values())}'
      + (' (' + ', '.join(f'{n} {why}' for why, n in
                          summary['frames_dropped_reading'].items()) + ')'
         if summary['frames_dropped_reading'] else '')
      + f', at the edges {summary["frames_dropped_edges"]}, after the last '
      f'window {summary["frames_dropped_leftover"]}',
  ]
  for key, count in summary['sequences'].items():
    lines.append(f'  {key}: {count} sequences')
  if summary['warnings']:
    lines.append(f'{summary["warnings"]} warning(s); all are listed in the '
                 'manifest')
  for path in result.manifest_paths:
    lines.append(f'manifest: {path}')
  return lines


def _check_out(out: str) -> None:
  """--out must be a folder (or not exist yet) that we can write into."""
  path = pathlib.Path(out)
  for parent in (path, *path.parents):
    if parent.exists():
      if not parent.is_dir():
        raise ConfigError(f'--out={out}: {parent} is a file; --out names the '
                          "folder to write the authors' layout into")
      if not os.access(parent, os.W_OK):
        raise ConfigError(f'--out={out}: {parent} is not writable; choose '
                          'another --out')
      return


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = _parser().parse_args(argv)
  logging.set_verbosity(logging.WARNING)
  progress = (lambda _: None) if args.quiet else (
      lambda line: print(line, flush=True))
  _check_out(args.out)
  result = pipeline.run(args.dataset, args.raw, args.out, args.length,
                        seed=args.seed, overwrite=args.overwrite,
                        progress=progress)
  print('\n'.join(_summary_lines(result)))
  return 0


if __name__ == '__main__':
  cli.exit_on_user_error(main)
