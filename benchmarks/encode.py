"""Times CAGE extraction (sequences per second); prints one JSON line.

  python benchmarks/encode.py [--sequences 4096 --length 6 --joints 20 --hidden 256
                               --pretext rev_rec --repeats 5]

Runs ``cages.compute_cages`` (the encode stage's compiled, zero-padded batched
call over the stacked models) on random sequences, after a warm-up pass, and
reports the median over ``--repeats`` passes.
"""

import argparse
import json
import statistics
import time

import jax
import numpy as np

from sge_jax.encode import cages
from sge_jax.models import GaitEncodingModel
from sge_jax.train import pretext
from sge_jax.train.state import init_stacked_params


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--sequences', type=int, default=4096)
  parser.add_argument('--length', type=int, default=6)
  parser.add_argument('--joints', type=int, default=20)
  parser.add_argument('--hidden', type=int, default=256)
  parser.add_argument('--pretext', default='rev_rec')
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args(argv)
  tasks = pretext.pretext_tasks(args.pretext, 'LA')
  model = GaitEncodingModel(hidden=args.hidden, num_joints=args.joints)
  params = init_stacked_params(model, jax.random.key(0), 3 * len(tasks),
                               args.length, args.joints)
  sequences = np.random.default_rng(0).normal(
      size=(args.sequences, args.length, args.joints, 3)).astype(np.float32)
  data = pretext.stacked_pretext_data(sequences, tasks, 0, 'test')
  start = time.perf_counter()
  cages.compute_cages(params, model, data)
  first_s = time.perf_counter() - start
  times = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    encodings = cages.compute_cages(params, model, data)
    times.append(time.perf_counter() - start)
  seconds = statistics.median(times)
  print(json.dumps({
      'benchmark': 'encode', 'sequences_per_s': round(args.sequences / seconds, 1),
      'ms_per_1k_sequences': round(1e6 * seconds / args.sequences, 2),
      'first_pass_s_incl_compile': round(first_s, 2),
      'encoding_shape': list(encodings.shape), 'models': 3 * len(tasks),
      'hidden': args.hidden, 'length': args.length, 'joints': args.joints,
      'device_kind': jax.devices()[0].device_kind, 'jax': jax.__version__}))


if __name__ == '__main__':
  main()
