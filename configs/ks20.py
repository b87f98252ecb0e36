"""KS20 (Kinect v2, J=25, 20 people); all views, or one with --config.data.view=<v>."""

from sge_jax.config import base_config, with_variant


def get_config(arg=None):
  config = base_config()
  config.data.name = 'KS20'
  config.train.temperature = 0.1
  config.rn.epochs = 800
  return with_variant(config, arg)
