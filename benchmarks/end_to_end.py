"""Times the demo job by stage; prints one JSON line.

  python benchmarks/end_to_end.py [--config=configs/demo.py] [--workdir=DIR]
                                  [--config.train.epochs=...]

Runs the stages of ``sge_jax.pipeline`` one by one on a fresh workdir (a temporary one
by default) and reports wall-clock seconds for data loading, encoder training
(compilation included), encoding, and evaluation (recognition network,
baselines, reports).
"""

import json
import pathlib
import tempfile
import time

from absl import app, flags
import jax
from ml_collections import config_flags

from sge_jax import workdir as workdir_lib
from sge_jax.config import resolve
from sge_jax.data.loading import prepare_dataset
from sge_jax.encode import encode_stage, load_encodings
from sge_jax.evaluate import evaluate_run
from sge_jax.train import train_encoders

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/demo.py',
                                          'Config to time.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (default: temporary).')


def main(argv):
  del argv
  run = resolve(_CONFIG.value, jax.local_device_count()).runs[0]
  workdir = pathlib.Path(_WORKDIR.value or tempfile.mkdtemp(prefix='sge_e2e_'))
  seconds = {}

  start = time.perf_counter()
  dataset = prepare_dataset(run.data)
  seconds['data'] = time.perf_counter() - start

  start = time.perf_counter()
  state = train_encoders(run, dataset, workdir)
  seconds['train'] = time.perf_counter() - start

  start = time.perf_counter()
  encode_stage(run, dataset, workdir, state.params)
  seconds['encode'] = time.perf_counter() - start

  start = time.perf_counter()
  results = evaluate_run(run, load_encodings(workdir / workdir_lib.ENCODINGS_FILE),
                         workdir)
  seconds['evaluate'] = time.perf_counter() - start
  print(json.dumps({
      'benchmark': 'end_to_end', 'dataset': dataset.name,
      'seconds': {k: round(v, 2) for k, v in seconds.items()},
      'total_s': round(sum(seconds.values()), 2),
      'train_steps': int(state.step), 'rank1': results['rank1'],
      'nauc': results.get('nauc'), 'workdir': str(workdir),
      'device_kind': jax.devices()[0].device_kind, 'jax': jax.__version__}))


if __name__ == '__main__':
  app.run(main)
