"""Seeds per hour: S seeds one after another (today's data-parallel training)
against the same S seeds as one seed stack, on the same devices, in one run.

  python benchmarks/seeds.py [--seeds 4 --hidden 64 --steps 30
                              --steps_per_call 10 --rounds 3 --devices 0]
  XLA_FLAGS=--xla_force_host_platform_device_count=2 \
      python benchmarks/seeds.py --devices 2

Both sides run the compiled calls training uses (``loop.make_train_calls``:
each seed's global batch sharded over the devices; ``seed_stack.
make_stack_calls``: every seed whole on its device, the seeds split over the
devices), on the demo data set (configs/demo.py, ``--hidden`` instead of its
k), after a warm-up call each, so compilation is left out. A round times the S
sequential runs of ``--steps`` steps each and the stack's ``--steps`` steps;
rounds alternate which side goes first (the machine's speed drifts). Seeds
per hour are for a whole demo training (its epochs x batches per epoch steps
per seed). Prints one JSON line per round, then a summary line with the median
ratio stack / sequential of seeds per hour and the ratio of each side's fastest
round.
"""

import argparse
import json
import statistics
import time

import jax
import numpy as np

from configs import demo
from sge_jax.data import load_dataset
from sge_jax.train import loop, pretext, seed_stack, setup
from sge_jax.train.devices import replicate, resident_batches
from sge_jax.train.state import create_train_state


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--seeds', type=int, default=4)
  parser.add_argument('--hidden', type=int, default=64, help='hidden size k')
  parser.add_argument('--pretext', default='rev_rec')
  parser.add_argument('--steps', type=int, default=30,
                      help='timed steps per seed (rounded up to whole calls)')
  parser.add_argument('--steps_per_call', type=int, default=10)
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--devices', type=int, default=0,
                      help='the first N local devices (0: all)')
  return parser.parse_args(argv)


def _setup(args):
  config = demo.get_config()
  config.model.hidden = args.hidden
  config.model.pretext = args.pretext
  dataset = load_dataset(config.data, int(config.seed))
  split = setup.encoder_training_split(dataset)
  sequences = loop.encoder_training_sequences(config, dataset, split).sequences
  return config, dataset, split, sequences


def _timed(run, calls: int) -> float:
  """Seconds of ``calls`` calls of ``run`` (which returns what to wait on)."""
  start = time.perf_counter()
  for _ in range(calls):
    jax.block_until_ready(run())
  return time.perf_counter() - start


def main(argv=None):
  args = parse_args(argv)
  devices = tuple(jax.local_devices()[:args.devices or None])
  config, dataset, split, sequences = _setup(args)
  seeds = list(range(args.seeds))
  definition = setup.build_definition(config, dataset.num_joints)
  tasks = setup.encoder_tasks(config.model)
  tx = setup.build_optimizer(config.train)
  num_models = len(definition.model_tasks)
  batch = int(config.train.batch_size)
  calls = -(-args.steps // args.steps_per_call)
  per_call = np.int32(args.steps_per_call)
  active = np.ones(num_models, bool)

  # Sequential: each seed's own state and data, the loop's compiled call.
  sequential = {}
  for seed in seeds:
    data = pretext.stacked_pretext_data(sequences, tasks, seed, split)
    resident, num_batches = resident_batches(data, batch, devices)
    state = create_train_state(
        definition.model, tx, jax.random.key(seed), num_models, dataset.length,
        dataset.num_joints)
    sequential[seed] = [replicate(state, devices), resident]
  run_sequential = loop.make_train_calls(definition, devices,
                                         args.steps_per_call, num_batches, False)

  def sequential_call(seed):
    entry = sequential[seed]
    entry[0], metrics = run_sequential(entry[0], entry[1], active, per_call)
    return metrics

  # The stack: every seed on the same devices.
  layout = seed_stack.seed_layout(seeds, len(devices))
  data, per_seed = seed_stack.stacked_seed_data(sequences, tasks, seeds, split)
  stack_resident, _ = seed_stack.resident_seed_batches(data, per_seed, batch,
                                                       layout, devices)
  stack = [seed_stack.place_stack(seed_stack.stacked_initial_states(
      definition.model, tx, seeds, num_models, dataset.length,
      dataset.num_joints), layout, devices)]
  run_stack = seed_stack.make_stack_calls(definition, devices,
                                          args.steps_per_call, num_batches,
                                          False, per_seed)
  stack_active = seed_stack.place_stack(np.ones((len(seeds), num_models), bool),
                                        layout, devices)
  steps_left = seed_stack.place_stack(np.full(len(seeds), per_call), layout,
                                      devices)

  def stack_call():
    stack[0], metrics = run_stack(stack[0], stack_resident, stack_active,
                                  steps_left, per_call)
    return metrics

  first_call_s = {'sequential': _timed(lambda: sequential_call(seeds[0]), 1),
               'stack': _timed(stack_call, 1)}
  for seed in seeds[1:]:
    _timed(lambda seed=seed: sequential_call(seed), 1)    # warm every seed

  train_steps = int(config.train.epochs) * num_batches
  ratios, rounds = [], {'sequential': [], 'stack': []}
  for round_index in range(args.rounds):
    sides = ['sequential', 'stack'][::1 if round_index % 2 == 0 else -1]
    seconds = {}
    for side in sides:
      if side == 'sequential':
        seconds[side] = sum(_timed(lambda seed=seed: sequential_call(seed),
                                   calls) for seed in seeds)
      else:
        seconds[side] = _timed(stack_call, calls)
    per_hour = {side: 3600 * len(seeds) * calls * args.steps_per_call
                / (value * train_steps) for side, value in seconds.items()}
    ratios.append(seconds['sequential'] / seconds['stack'])
    for side, value in seconds.items():
      rounds[side].append(value)
    print(json.dumps({
        'round': round_index, 'first': sides[0],
        'seconds': {side: round(value, 2) for side, value in seconds.items()},
        'seeds_per_hour': {side: round(value, 1)
                           for side, value in per_hour.items()},
        'ratio_stack_over_sequential': round(ratios[-1], 3)}))
  print(json.dumps({
      'benchmark': 'seeds', 'median_ratio_stack_over_sequential':
          round(statistics.median(ratios), 3),
      'ratios': [round(ratio, 3) for ratio in ratios],
      # The least disturbed round of each side (a shared machine only ever
      # slows a side down).
      'ratio_of_fastest_rounds': round(min(rounds['sequential'])
                                       / min(rounds['stack']), 3),
      'fastest_seeds_per_hour': {
          side: round(3600 * len(seeds) * calls * args.steps_per_call
                      / (min(values) * train_steps), 1)
          for side, values in rounds.items()},
      'seeds': len(seeds), 'seeds_per_device': layout.per_device,
      'devices': len(devices), 'device_kind': devices[0].device_kind,
      'hidden': args.hidden, 'pretext': args.pretext, 'batch': batch,
      'timed_steps_per_seed': calls * args.steps_per_call,
      'train_steps_per_seed': train_steps,
      'first_call_s': {side: round(value, 1)
                       for side, value in first_call_s.items()},
      'jax': jax.__version__}))


if __name__ == '__main__':
  main()
