"""Times the compiled three-axis training step; prints one JSON line.

  python benchmarks/train_step.py [--batch 128 --length 6 --joints 20 --hidden 256
                                   --pretext rev_rec --steps 30 --steps_per_call 10]

It runs the same compiled call that training uses (``loop.make_train_calls``:
``steps_per_call`` optimizer steps as one ``lax.scan`` over device-resident
batches), after a warm-up call, and reports the median over at least ``--steps``
steps. ``ms_per_axis_step`` divides by the number of stacked models (3 per
pretext), which is what a one-axis implementation such as the PyTorch peer times.
"""

import argparse
import json
import statistics
import time

import jax
import numpy as np

from sge_jax.models import GaitEncodingModel
from sge_jax.train import optim, pretext
from sge_jax.train.devices import replicate, resident_batches
from sge_jax.train.loop import make_train_calls
from sge_jax.train.state import create_train_state
from sge_jax.train.step import LossSettings, StepDefinition


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--batch', type=int, default=128)
  parser.add_argument('--length', type=int, default=6, help='frames f')
  parser.add_argument('--joints', type=int, default=20, help='joints J')
  parser.add_argument('--hidden', type=int, default=256, help='hidden size k')
  parser.add_argument('--pretext', default='rev_rec')
  parser.add_argument('--steps', type=int, default=30,
                      help='timed steps (at least; rounded up to whole calls)')
  parser.add_argument('--steps_per_call', type=int, default=10)
  parser.add_argument('--devices', type=int, default=1)
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  devices = tuple(jax.local_devices()[:args.devices])
  tasks = pretext.pretext_tasks(args.pretext, 'LA')
  model_tasks = pretext.per_model_tasks(tasks)
  model = GaitEncodingModel(hidden=args.hidden, num_joints=args.joints)
  definition = StepDefinition(model, model_tasks, LossSettings())
  state = create_train_state(model, optim.tf_adam_with_value_clipping(5e-4, 5.0),
                             jax.random.key(0), len(model_tasks), args.length,
                             args.joints)
  sequences = np.random.default_rng(0).normal(
      size=(args.batch * args.steps_per_call, args.length, args.joints, 3))
  data = pretext.stacked_pretext_data(sequences.astype(np.float32), tasks, 0,
                                      'train')
  resident, num_batches = resident_batches(data, args.batch, devices)
  run_calls = make_train_calls(
      definition, devices, args.steps_per_call, num_batches, False)
  active = np.ones(len(model_tasks), bool)
  replicated = replicate(state, devices)

  start = time.perf_counter()
  steps = np.int32(args.steps_per_call)
  replicated, metrics = run_calls(replicated, resident, active, steps)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  replicated, metrics = run_calls(replicated, resident, active, steps)  # warm-up
  jax.block_until_ready(metrics)

  per_step = []
  for _ in range(-(-args.steps // args.steps_per_call)):
    start = time.perf_counter()
    replicated, metrics = run_calls(replicated, resident, active, steps)
    jax.block_until_ready(metrics)
    per_step.append((time.perf_counter() - start) / args.steps_per_call)
  ms_per_step = 1e3 * statistics.median(per_step)
  print(json.dumps({
      'benchmark': 'train_step',
      'ms_per_step': round(ms_per_step, 2),
      'ms_per_axis_step': round(ms_per_step / len(model_tasks), 2),
      'seq_per_s': round(args.batch / ms_per_step * 1e3, 1),
      'compile_s': round(compile_s, 2),
      'timed_steps': len(per_step) * args.steps_per_call,
      'models': len(model_tasks), 'batch': args.batch, 'length': args.length,
      'joints': args.joints, 'hidden': args.hidden,
      'device_kind': devices[0].device_kind, 'device_count': len(devices),
      'jax': jax.__version__,
  }))


if __name__ == '__main__':
  main()
