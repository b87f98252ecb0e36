"""IAS-Lab (Kinect v1, J=20, 11 people): IAS-A (same clothes) and IAS-B (different clothes)."""

from sge_jax.config import base_config, with_variant


def get_config(arg=None):
  config = base_config()
  config.data.name = 'IAS'
  config.train.temperature = 0.1
  return with_variant(config, arg)
