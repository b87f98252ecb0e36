"""Real Kinect v2 walking recordings (GIST normal gait, J=25, 10 people).

Generic .npz format; walks 1-10 train the encoders and the recognition network,
walks 11-20 are the test (probe) set. The file is not part of the repository:
by default it is looked up in ../shared/data/real_kinect_gait/ beside the checkout;
point elsewhere with --config.data.path=... . Caveat (from the data's README):
bone lengths alone nearly solve this set; read the baselines next to CAGEs.
"""

import os

from sge_jax.config import base_config, with_variant

DEFAULT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..',
                            'shared', 'data', 'real_kinect_gait',
                            'gist_gait_normal.npz')


def get_config(arg=None):
  config = base_config()
  config.data.format = 'npz'
  config.data.name = 'gist_gait_normal'     # a label; npz data is named by its file
  config.data.path = os.path.normpath(DEFAULT_PATH)
  config.data.split_field = 'trial'
  config.data.train_values = '1-10'
  config.train.temperature = 0.1
  config.train.epochs = 100
  return with_variant(config, arg)
