"""CAGEs with trained encoders: the encode stage, the Python API, the
``python -m sge_jax.encode`` command and the ``encodings.npz`` format.

  stage.py      ``encode_stage(run_settings, dataset, workdir)``: every split
                of a run to ``<workdir>/encodings.npz``
  cages.py      computing CAGEs (``split_cages``, ``encode_dataset``)
  encodings.py  the ``encodings.npz`` file format (its fields, save and load)
  api.py        ``load_encoder(workdir)``: a finished run's encoders, to encode
                new sequences from Python
  new_data.py   ``encode_file``: new data (a generic .npz or the authors'
                layout) with a finished run's encoders, to an encodings file
  __main__.py   ``python -m sge_jax.encode``

The format's names load without JAX; the others load on first use.
"""

from sge_jax.encode.encodings import EncodingSet, load_encodings, save_encodings


def __getattr__(name: str):
  if name == 'encode_stage':
    from sge_jax.encode.stage import encode_stage  # pylint: disable=import-outside-toplevel
    return encode_stage
  if name in ('load_encoder', 'Encoder'):
    from sge_jax.encode import api  # pylint: disable=import-outside-toplevel
    return getattr(api, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
