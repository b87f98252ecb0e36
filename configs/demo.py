"""The built-in demo: procedural walking skeletons (synthetic, no download).

Twelve synthetic people with their own body proportions and gait style; six
training and two test recordings each. Finishes in a few minutes on 2 CPU cores.
Numbers from it describe the synthetic set only, not any real dataset.

Unlike the paper's set-up, sequences are centred (data.normalization='center'):
the walkers cross the whole view, and with raw camera coordinates the window's
position dominates short training runs. --config.data.normalization=none shows
the authors' raw-coordinate behaviour.
"""

from sge_jax.config import base_config, with_variant


def get_config(arg=None):
  config = base_config()
  config.data.format = 'synthetic'
  config.data.name = 'demo'
  config.data.normalization = 'center'
  config.model.hidden = 128
  config.train.epochs = 30
  config.train.log_every_steps = 20
  config.train.checkpoint_every_steps = 100
  config.rn.epochs = 300
  return with_variant(config, arg)
