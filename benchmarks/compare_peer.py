"""sge-jax's per-axis training step against the PyTorch peer, in one session.

  python benchmarks/compare_peer.py [--rounds 3] [--peer ../shared/bench/peer_torch.py]
                                    [--peer_python ~/torchpeer/bin/python]

Runs ``benchmarks/train_step.py`` and the peer (``peer_torch.py``: one training
step of ONE axis model, 2 threads) alternately, ``--rounds`` times each, at
B=128, f=6, J=20, k=256, and prints one JSON line with every measurement and the
ratio sge-jax ms per axis step / peer ms per step (median over rounds, and per
round). Alternating puts both under the same machine conditions; this VM's speed
drifts by 20-30% over minutes.

The peer needs its own environment (see its README):
  python -m venv ~/torchpeer && ~/torchpeer/bin/pip install torch==2.13.0
"""

import argparse
import json
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_PEER = REPO.parent / 'shared' / 'bench' / 'peer_torch.py'


def run_sge_jax(args) -> dict:
  command = [sys.executable, str(REPO / 'benchmarks' / 'train_step.py'),
             f'--steps={args.steps}', f'--batch={args.batch}']
  out = subprocess.run(command, capture_output=True, text=True, check=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
  return json.loads(out.stdout.strip().splitlines()[-1])


def run_peer(args) -> float:
  command = [os.path.expanduser(args.peer_python), str(args.peer),
             f'--steps={args.steps}', f'--batch={args.batch}', '--f=6', '--J=20',
             '--threads=2']
  out = subprocess.run(command, capture_output=True, text=True, check=True)
  match = re.search(r'median ms/step=([0-9.]+)', out.stdout)
  if not match:
    raise RuntimeError(f'unexpected peer output:\n{out.stdout}\n{out.stderr}')
  return float(match.group(1))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--steps', type=int, default=30)
  parser.add_argument('--batch', type=int, default=128)
  parser.add_argument('--peer', type=pathlib.Path, default=DEFAULT_PEER)
  parser.add_argument('--peer_python', default=os.environ.get(
      'PEER_PYTHON', '~/torchpeer/bin/python'))
  args = parser.parse_args(argv)
  if not args.peer.exists():
    sys.exit(f'error: no peer script at {args.peer}; pass --peer=PATH')
  if not pathlib.Path(os.path.expanduser(args.peer_python)).exists():
    sys.exit(f'error: no Python at {args.peer_python} for the peer; create it with '
             '`python -m venv ~/torchpeer && ~/torchpeer/bin/pip install '
             'torch==2.13.0` or pass --peer_python=PATH')
  rounds = []
  for index in range(args.rounds):
    ours = run_sge_jax(args)
    peer = run_peer(args)
    rounds.append({'sge_jax_ms_per_axis_step': ours['ms_per_axis_step'],
                   'sge_jax_ms_per_step': ours['ms_per_step'],
                   'peer_ms_per_step': peer,
                   'ratio': round(ours['ms_per_axis_step'] / peer, 3)})
    print(f'round {index + 1}: {rounds[-1]}', file=sys.stderr)
  ours = statistics.median(r['sge_jax_ms_per_axis_step'] for r in rounds)
  peer = statistics.median(r['peer_ms_per_step'] for r in rounds)
  print(json.dumps({
      'benchmark': 'compare_peer', 'ratio': round(ours / peer, 3),
      'sge_jax_ms_per_axis_step': ours, 'peer_ms_per_step': peer,
      'rounds': rounds, 'batch': args.batch, 'length': 6, 'joints': 20,
      'hidden': 256, 'machine': f'{platform.machine()} {os.cpu_count()} cores',
  }))


if __name__ == '__main__':
  main()
