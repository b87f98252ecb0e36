"""The train stage: self-supervised training of the stacked axis models.

Entry: ``train_encoders(run_settings, dataset, workdir)`` (``loop.py``). The
objective is ``step.py`` (pure), its terms ``losses.py``, the targets
``pretext.py``.
"""

from sge_jax.train.loop import train_encoders
from sge_jax.train.setup import restore_trained_params
