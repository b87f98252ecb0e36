"""BIWI (Kinect v1, J=20): train on Training (50 people), test on Walking and Still (28).

Both test sets are evaluated; restrict with --config.data.probe=Walking.
"""

from configs import default


def get_config(arg=None):
  config = default.base_config()
  config.data.name = 'BIWI'
  config.train.temperature = 0.1
  return default.with_variant(config, arg)
