"""CASIA-B cross-view evaluation (J=14 estimated poses, 124 people).

One run per view: the encoders and the recognition network train on view
``data.view`` and are tested on the other views' sequences in that view's test
folder. f in {20, 30, 40}: --config.data.length=30.
"""

from sge_jax.config import base_config, with_variant


def get_config(arg=None):
  config = base_config()
  # The authors' CASIA-B default (--norm 1), in both procedures.
  config.data.normalization = 'root_joint'
  config.data.name = 'CASIA_B'
  config.data.length = 20
  config.data.view = '0'
  config.train.temperature = 0.15
  config.train.epochs = 100
  config.rn.epochs = 1000
  config.rn.batch_size = 1280
  config.rn.learning_rate = 5e-3
  return with_variant(config, arg)
