"""CASIA-B condition-matching evaluation (J=14, 124 people).

Probe sequences of one walking condition (nm, bg, cl) are matched to the gallery
of another by nearest neighbour on sequence-level CAGEs; the encoders train on the
gallery only. ``data.view`` is '<probe>.<gallery>', e.g. --config.data.view=cl.nm;
f in {50, 60, 70}.
"""

from sge_jax.config import base_config, with_variant


def get_config(arg=None):
  config = base_config()
  # The authors' CASIA-B default (--norm 1), in both procedures.
  config.data.normalization = 'root_joint'
  config.data.name = 'CASIA_B_match'
  config.data.length = 50
  config.data.view = 'nm.nm'
  config.train.temperature = 0.15
  config.train.epochs = 100
  config.eval.protocols = 'CME'
  return with_variant(config, arg)
