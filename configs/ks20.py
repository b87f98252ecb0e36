"""KS20 (Kinect v2, J=25, 20 people); all views, or one with --config.data.view=<v>."""

from configs import default


def get_config(arg=None):
  config = default.base_config()
  config.data.name = 'KS20'
  config.train.temperature = 0.1
  config.rn.epochs = 800
  return default.with_variant(config, arg)
