"""The encode stage: CAGEs of every split with the trained encoders.

Entry: ``encode_stage(run_settings, dataset, workdir)`` (``stage.py``).
``cages.py`` computes CAGEs; ``encodings.py`` is the ``encodings.npz`` file
format.
"""

from sge_jax.encode.encodings import EncodingSet, load_encodings, save_encodings
from sge_jax.encode.stage import encode_stage
