"""Every config rule: the fields, the variants, the checks, the typed settings.

  fields.py      every field with its default and meaning (``base_config``),
                 the allowed choices, ``QUIRKS``
  variants.py    ``:smoke``, ``:released`` (``with_variant``, ``get_config``)
  checks.py      ``invalid`` and the value checks, parsing, field types
  resolution.py  ``resolve``: a config resolved (``resolve_config``), checked
                 (``validate_config``) and made settings, once per job
  settings.py    the typed, frozen settings the stages read
  quirks.py      where each released-code behaviour can act
  identity.py    which fields define the encoders and the results

The config files in ``configs/`` import ``base_config`` and ``with_variant``
from here. Imports no JAX: a config can be checked before anything heavy loads.
"""

from sge_jax.config.checks import (MAX_SEED, SAVED_CONFIG_SECTIONS, data_seed,
                                   invalid, is_multi_seed, mistyped_field,
                                   parse_list, parse_seeds, parse_stages,
                                   saved_config_problem)
from sge_jax.config.fields import (ATTENTION_TYPES, CME_DATASET,
                                   DECODER_INPUT_MODES, DISTANCES,
                                   EARLY_STOPPING_RULES, ENCODER_QUIRKS,
                                   EVAL_LEVELS, FORMATS, MANNERS,
                                   NORMALIZATIONS, PARALLEL_MODES, PRETEXTS,
                                   PROCEDURES, PROTOCOLS, QUIRKS,
                                   RETRIEVAL_FEATURES, SELECTION_RULES, STAGES,
                                   WALK_AGGREGATIONS, base_config)
from sge_jax.config.identity import (BOOKKEEPING_FIELDS, DEVICE_FIELDS,
                                     ENCODER_SECTIONS, REEVALUATION_SECTIONS,
                                     RESUMABLE_FIELDS, config_hash,
                                     encoder_differences, flatten,
                                     result_differences)
from sge_jax.config.quirks import (quirk_applicability, quirk_label,
                                   quirks_not_applicable, quirks_on,
                                   rn_settings_for, runs_cme)
from sge_jax.config.resolution import (parallel_settings, resolve,
                                       resolve_config, run_settings,
                                       seed_configs, transfer_settings,
                                       validate_config, with_transfer)
from sge_jax.config.settings import (DataSettings, EvalSettings, JobSettings,
                                     ModelSettings, ParallelSettings,
                                     QuirkSettings, RNSettings, RunSettings,
                                     SyntheticSettings, TrainSettings,
                                     TransferSettings)
from sge_jax.config.variants import VARIANTS, get_config, with_variant
