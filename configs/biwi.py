"""BIWI (Kinect v1, J=20): train on Training (50 people), test on Walking and Still (28).

Both test sets are evaluated; restrict with --config.data.probe=Walking.
"""

from sge_jax.config import base_config, with_variant


def get_config(arg=None):
  config = base_config()
  config.data.name = 'BIWI'
  config.train.temperature = 0.1
  return with_variant(config, arg)
