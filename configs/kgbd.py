"""KGBD (Kinect v1, J=20, 164 people): train on the remaining recordings, test on the probe.

Data: Datasets/KGBD/<f>/KGBD_{train,test}_npy_data/ (see docs/data.md, "Getting the data").
"""

from sge_jax.config import base_config, with_variant


def get_config(arg=None):
  config = base_config()
  config.data.name = 'KGBD'
  config.train.temperature = 0.5
  config.train.epochs = 150
  config.rn.epochs = 200
  return with_variant(config, arg)
