"""IAS-Lab (Kinect v1, J=20, 11 people): IAS-A (same clothes) and IAS-B (different clothes)."""

from configs import default


def get_config(arg=None):
  config = default.base_config()
  config.data.name = 'IAS'
  config.train.temperature = 0.1
  return default.with_variant(config, arg)
