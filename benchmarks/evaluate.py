"""Times re-evaluation from a saved RN against one training epoch of the same
run, at the demo's scale and at KGBD's; prints one JSON line per scale.

  python benchmarks/evaluate.py [--scales demo,kgbd] [--workdir DIR]
                                [--hidden K] [--skip_cli]

Per scale, in this one process (so that both quantities see the same machine
load):

1. the run: ``configs/demo.py`` (kgbd: 164 people, 6 training and 2 test
   recordings of 140 frames each, i.e. 19,680 training and 6,560 test
   windows, and k = 32 unless ``--hidden``), one training epoch, encoded and
   evaluated once, which trains and saves the RN. An existing finished run in
   ``DIR/<scale>`` is reused (``--workdir``; default: a temporary folder).
2. ``train_epoch_s``: the train stage of a fresh one-epoch run of that config
   (``train_encoders``, compilation included, as every run pays it), in a
   scratch folder. Then, with the compiled program cached in this process:
   ``train_epoch_warm_s``, the same again, and ``train_steady_epoch_s``, a
   two-epoch run's train stage minus that, i.e. one epoch of steps alone.
3. ``reevaluate_unstored_s``: ``reevaluation.reevaluate`` of the run (every
   protocol, the RN re-scored from its saved parameters, reports and plots),
   in process, with the run's ``eval_cache/`` deleted first, so that the
   baselines are computed (and stored) again; ``reevaluate_s``: the same
   again, as every later re-evaluation runs (the baselines read back);
   ``reevaluate_cli_s``: the same as ``python -m sge_jax.evaluate`` in a
   subprocess (imports and JAX start-up included), unless ``--skip_cli``.

Ratios are re-evaluation over the one-epoch train stage (and over the steady
epoch). The machine's load average is printed with the numbers: on a shared
machine compare ratios from one run, not times across runs.
"""

import argparse
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import jax

from sge_jax import pipeline, reevaluation
from sge_jax import workdir as workdir_lib
from sge_jax.config import resolve
from sge_jax.data.loading import prepare_dataset
from sge_jax.evaluate import result_cache
from sge_jax.train import train_encoders

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCALES = {
    'demo': {},
    'kgbd': {'data.synthetic.num_people': 164,
             'data.synthetic.recordings_per_person': 6,
             'data.synthetic.test_recordings_per_person': 2,
             'data.synthetic.frames_per_recording': 140,
             'model.hidden': 32},
}
# The run's own evaluation trains the RN once (re-evaluation re-scores it);
# its length does not change what re-evaluation costs.
RN_EPOCHS = 30


def scale_config(scale: str, hidden: int | None, epochs: int):
  spec = importlib.util.spec_from_file_location('demo_config',
                                                ROOT / 'configs' / 'demo.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  overrides = dict(SCALES[scale])
  if hidden:
    overrides['model.hidden'] = hidden
  overrides.update({'train.epochs': epochs, 'rn.epochs': RN_EPOCHS})
  config.update_from_flattened_dict(overrides)
  return config


def run_settings(config):
  """The settings of the run ``config`` describes, as ``pipeline.run``
  resolves them on this machine's devices."""
  return resolve(config, jax.device_count()).runs[0]


def timed(function, *args):
  start = time.perf_counter()
  function(*args)
  return time.perf_counter() - start


def train_stage_seconds(config, dataset) -> float:
  with tempfile.TemporaryDirectory(prefix='sge_bench_train_') as scratch:
    return timed(train_encoders, run_settings(config), dataset, scratch)


def ensure_run(config, run_dir: pathlib.Path) -> bool:
  """Builds the run unless a finished one is there; True when reused."""
  finished = ((run_dir / workdir_lib.RESULTS_FILE).is_file()
              and (run_dir / 'rn.npz').is_file())
  if not finished:
    pipeline.run(config, run_dir)
  return finished


def cli_seconds(run_dir: pathlib.Path) -> float:
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [str(ROOT)] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
  start = time.perf_counter()
  subprocess.run([sys.executable, '-m', 'sge_jax.evaluate',
                  f'--workdir={run_dir}', '--name=benchmark_cli'],
                 check=True, env=env, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)
  return time.perf_counter() - start


def measure(scale: str, root: pathlib.Path, hidden: int | None,
            skip_cli: bool) -> dict:
  one_epoch = scale_config(scale, hidden, epochs=1)
  run_dir = root / scale
  reused = ensure_run(one_epoch, run_dir)
  dataset = prepare_dataset(run_settings(one_epoch).data)
  jax.clear_caches()      # compiled when the run was built in this process
  seconds = {'train_epoch_s': train_stage_seconds(one_epoch, dataset)}
  # First without the baselines' stored results (as when eval_cache/ was
  # deleted or the evaluate code changed), which stores them again; then as
  # every later re-evaluation runs.
  shutil.rmtree(run_dir / result_cache.CACHE_DIR, ignore_errors=True)
  seconds['reevaluate_unstored_s'] = timed(reevaluation.reevaluate, run_dir,
                                           {}, 'benchmark')
  seconds['reevaluate_s'] = timed(reevaluation.reevaluate, run_dir, {},
                                  'benchmark')
  seconds['train_epoch_warm_s'] = train_stage_seconds(one_epoch, dataset)
  two_epochs = train_stage_seconds(scale_config(scale, hidden, epochs=2),
                                   dataset)
  seconds['train_steady_epoch_s'] = two_epochs - seconds['train_epoch_warm_s']
  if not skip_cli:
    seconds['reevaluate_cli_s'] = cli_seconds(run_dir)
  train = dataset.splits['train']
  return {
      'benchmark': 'evaluate', 'scale': scale,
      'num_train_windows': int(train.labels.size),
      'num_test_windows': int(sum(split.labels.size for name, split
                                  in dataset.splits.items()
                                  if name != 'train')),
      'hidden': int(one_epoch.model.hidden),
      **{key: round(value, 2) for key, value in seconds.items()},
      'reevaluate_over_epoch': round(seconds['reevaluate_s']
                                     / seconds['train_epoch_s'], 2),
      'unstored_over_epoch': round(seconds['reevaluate_unstored_s']
                                   / seconds['train_epoch_s'], 2),
      'reevaluate_over_steady_epoch': round(
          seconds['reevaluate_s'] / max(seconds['train_steady_epoch_s'], 1e-9),
          2),
      'run': str(run_dir), 'run_reused': reused,
      'load_average': [round(x, 2) for x in os.getloadavg()],
      'cpus': os.cpu_count(), 'device_kind': jax.devices()[0].device_kind,
  }


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--scales', default='demo,kgbd')
  parser.add_argument('--workdir', default=None,
                      help='folder of the runs (reused when finished)')
  parser.add_argument('--hidden', type=int, default=None,
                      help='encoder size k for every scale')
  parser.add_argument('--skip_cli', action='store_true')
  args = parser.parse_args(argv)
  scales = args.scales.split(',')
  unknown = [scale for scale in scales if scale not in SCALES]
  if unknown:
    parser.error(f'unknown scale(s) {", ".join(unknown)}; choose from '
                 f'{", ".join(SCALES)}')
  root = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix='sge_bench_eval_'))
  for scale in scales:
    print(json.dumps(measure(scale, root, args.hidden, args.skip_cli)),
          flush=True)


if __name__ == '__main__':
  main()
