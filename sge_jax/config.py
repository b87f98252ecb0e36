"""Every config rule: the defaults, the variants, the checks, typed settings.

``base_config()`` lists every field with its default and meaning; the dataset
configs in ``configs/`` start from it and override what differs, and every
command line (``launch.py``, ``python -m sge_jax.evaluate``) reads the same
fields. ``validate_config`` checks a whole config before any work starts and
raises ``ConfigError`` naming the field, the allowed values and the flag that
fixes it (``invalid``, the one builder of that message). ``RNSettings`` and
``EvalSettings`` are the checked, typed views of ``config.rn`` and
``config.eval``. ``ENCODER_SECTIONS``/``BOOKKEEPING_FIELDS`` say which fields
define the trained encoders (``encoder_differences``, ``config_hash``).

This module imports no JAX: a config can be checked before anything heavy loads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import numbers
from typing import Any, Iterable, Mapping, Optional

import ml_collections

from sge_jax.errors import ConfigError

# ----------------------------------------------------------------- choices

STAGES = ('train', 'encode', 'evaluate')
FORMATS = ('authors', 'npz', 'synthetic')
ATTENTION_TYPES = ('LA', 'BA')
PRETEXTS = ('rev_rec', 'prediction', 'sorting', 'rev_rec_plus')
DECODER_INPUT_MODES = ('zeros', 'shifted_target')
EARLY_STOPPING_RULES = ('none', 'paper')
MANNERS = ('ap', 'sc')
SELECTION_RULES = ('val', 'fixed', 'paper')
PROTOCOLS = ('A', 'B', 'CME')
DISTANCES = ('euclidean', 'cosine')
RETRIEVAL_FEATURES = ('concat', 'mean')
EVAL_LEVELS = ('window', 'walk', 'both')
WALK_AGGREGATIONS = ('vote', 'mean')
PROCEDURES = ('clean', 'released')
NORMALIZATIONS = ('none', 'root_joint', 'center')
# The released code's behaviours (docs/released_procedure.md), one config.quirks
# field each: behaviour id -> field. procedure='released' turns every one on,
# 'clean' every one off; a field set explicitly wins over the procedure.
QUIRKS = {
    'R1': 'extraction_batches',
    'R2': 'plus_from_rev_rec',
    'R3': 'plus_test_copies',
    'R4': 'fixed_rn_shuffle',
    'R5': 'full_test_batches',
    'R6': 'select_on_test',
    'R7': 'biwi_two_thirds',
    'R9': 'reversed_la_mask',
    'R10': 'redrawn_sorting',
    'R11': 'second_nearest',
    'R12': 'equal_id_counts',
}
# Quirks that change what the encoders learn: they enter the encoder identity
# (config_hash, encoder_differences) when on. The others act on extraction and
# the RN only, so trained encoders can be shared across them.
ENCODER_QUIRKS = ('biwi_two_thirds', 'reversed_la_mask', 'redrawn_sorting')


# ----------------------------------------------------------------- defaults


def _unset_flag() -> ml_collections.FieldReference:
  """A bool field whose None means 'not set' (settable from the command line)."""
  return ml_collections.FieldReference(None, field_type=bool)


def base_config() -> ml_collections.ConfigDict:
  """Every field with its default (the paper's values where it has one)."""
  config = ml_collections.ConfigDict()

  # Root seed: model init, sorting permutations, RN init/shuffling and validation
  # split all derive from it (typed PRNG keys, fold_in per use).
  config.seed = 0
  # Multi-seed run: comma-separated seeds or ranges ('0,1,2', '0-7'). Empty = just
  # `seed`. Each seed runs the whole job in <workdir>/seed_<s>/; the workdir gets
  # mean ± std. Seeds are integers from 0 to 2**32 - 1 (distinct PRNG keys).
  config.seeds = ''
  # Stages to run, comma-separated, in this order: train (self-supervised encoders),
  # encode (CAGEs -> encodings.npz), evaluate (RN, metrics, baselines, reports).
  config.stages = 'train,encode,evaluate'
  # Reuse the trained encoders of another workdir instead of training here (the
  # authors' "transfer" setting: encode this dataset with that dataset's model).
  config.encoder_workdir = ''
  # 'clean' (this project's procedure) or 'released' (the authors' released code,
  # including its bugs: every behaviour of config.quirks on). It only sets the
  # defaults of config.quirks; docs/released_procedure.md describes each one.
  config.procedure = 'clean'
  # The released-code behaviours, each switchable alone (None = follow
  # config.procedure; True/False = on/off whatever the procedure). Resolved
  # once, by resolve_config, before anything runs.
  config.quirks = ml_collections.ConfigDict()
  # R1: the RN's rows are built per person (sorted ids) in batches of 128: a
  # person with n < 128 sequences is padded with copies of their first sequence
  # (kept for training, cut again on the test side); n >= 128 keeps only
  # floor(n/128)*128 (train and test).
  config.quirks.extraction_batches = _unset_flag()
  # R2: rev_rec_plus CAGEs are made from the rev_rec weights three times (block 1
  # a duplicate of block 0, block 2 of frame-permuted training inputs), ordered
  # x0 x1 x2 y0 y1 y2 z0 z1 z2; the prediction and sorting models are unused.
  config.quirks.plus_from_rev_rec = _unset_flag()
  # R3: with R1 on and rev_rec_plus, the test rows keep the padding copies.
  config.quirks.plus_test_copies = _unset_flag()
  # R4: the RN's training rows are shuffled once and visited in that order
  # every epoch (the incomplete last batch is never seen).
  config.quirks.fixed_rn_shuffle = _unset_flag()
  # R5: only full batches of rn.batch_size test rows are scored (frames in
  # AP, once-permuted sequences in SC); fewer rows are padded with copies of row 0.
  config.quirks.full_test_batches = _unset_flag()
  # R6: the RN epoch is chosen on the test split, the LAST epoch reaching the
  # best accuracy ('>='); IAS keeps the FIRST ('>'). Overrides rn.selection.
  config.quirks.select_on_test = _unset_flag()
  # R7: BIWI encoders train on the first floor(2n/3) training sequences.
  config.quirks.biwi_two_thirds = _unset_flag()
  # R9: the LA loss's mask assumes a reversed target whatever the pretext task.
  config.quirks.reversed_la_mask = _unset_flag()
  # R10: sorting permutations differ per axis and are drawn afresh (another
  # seeded stream) when CAGEs are computed, so the encoded permutation is not
  # the trained one.
  config.quirks.redrawn_sorting = _unset_flag()
  # R11: CME same-condition matching takes the second-nearest gallery entry
  # (gallery built as R1's training rows, copies included).
  config.quirks.second_nearest = _unset_flag()
  # R12: the RN has one class per test id and ids are matched by sorted rank,
  # so the run stops unless the training and test person sets are equal.
  config.quirks.equal_id_counts = _unset_flag()

  # ---------------------------------------------------------------- data
  config.data = ml_collections.ConfigDict()
  # 'authors' (the authors' preprocessed .npy layout), 'npz' (generic skeleton .npz:
  # positions + seq_offsets + seq_person), or 'synthetic' (built-in demo walkers).
  config.data.format = 'authors'
  # Folder holding <name>/<length>/... in the authors' layout (their `Datasets/`).
  config.data.root = 'Datasets'
  # Dataset name: KGBD, BIWI, IAS, KS20, CASIA_B, CASIA_B_match, or any other name
  # in the authors' layout (J is inferred from the arrays).
  config.data.name = 'KGBD'
  # Frames per sequence, f.
  config.data.length = 6
  # Test split(s) for evaluation, comma-separated ('' = every test split). Names:
  # BIWI 'Walking'/'Still', IAS 'A'/'B', CASIA-B CME '<probe>.<gallery>' conditions
  # are chosen by `view`, others 'test' or 'probe'.
  config.data.probe = ''
  # View folder: KS20 view_<v> (optional), CASIA-B CVE view_<v>, CASIA-B CME
  # '<probe>.<gallery>' condition pair such as 'nm.bg'.
  config.data.view = ''
  # 'npz' format: path of the .npz file.
  config.data.path = ''
  # 'npz' format: how sequences split into train and test: by the per-sequence
  # field `split_field` ('trial' or 'view'); values in `train_values` (ranges and
  # lists such as '1-10' or '1,3,5') go to train, the rest to test.
  config.data.split_field = 'trial'
  config.data.train_values = '1-10'
  # Keep at most N sequences of every split, the first N/P of each of its P
  # people (stored order kept); 0 = all. For quick smoke runs on a full dataset.
  config.data.max_sequences = 0
  # Seed of everything the data draws (the synthetic walkers); -1 = the root
  # `seed`. A multi-seed run (`seeds`) keeps the data of the root seed, so its
  # mean ± std shows the variation of the models and the RN only.
  config.data.seed = -1
  # Coordinates before training and encoding: 'none' (raw camera coordinates,
  # as the authors' code feeds most datasets), 'root_joint' (every frame minus
  # its joint 0, per axis: the authors' CASIA-B default, their --norm 1), or
  # 'center' (every sequence minus its mean position over its f frames and J
  # joints, per axis; not in the authors' code: it removes where in the room a
  # window was recorded, which confounds identity when people walk across the
  # view: on the demo set Rank-1 35% raw vs 89% centred after 30 epochs).
  config.data.normalization = 'none'
  # Deprecated: True/False = normalization 'center'/'none' (a warning says so).
  config.data.center_sequences = _unset_flag()
  # 'synthetic' format: size of the procedural walking set.
  config.data.synthetic = ml_collections.ConfigDict()
  config.data.synthetic.num_people = 12
  config.data.synthetic.recordings_per_person = 6
  config.data.synthetic.test_recordings_per_person = 2
  config.data.synthetic.frames_per_recording = 140

  # ---------------------------------------------------------------- model
  config.model = ml_collections.ConfigDict()
  # 'LA' (locality-aware attention loss) or 'BA' (basic attention, no attention loss).
  config.model.attention = 'LA'
  # 'rev_rec' (reverse reconstruction), 'prediction', 'sorting', or 'rev_rec_plus'
  # (rev_rec/LA + prediction/BA + sorting/BA, CAGEs concatenated: 2304 per frame).
  config.model.pretext = 'rev_rec'
  # Hidden size k of every LSTM and of the attention/projector layers.
  config.model.hidden = 256
  # LSTM layers in the encoder and in the decoder.
  config.model.num_layers = 2
  # Decoder inputs: 'zeros' (what the authors' code effectively feeds) or
  # 'shifted_target' (teacher forcing with (0, y_1 ... y_{f-1})).
  config.model.decoder_input = 'zeros'
  # Weight of the locality-aware contrastive loss (1.0 = paper; 0 disables it).
  config.model.contrastive_weight = 1.0

  # ---------------------------------------------------------------- train
  config.train = ml_collections.ConfigDict()
  config.train.epochs = 400
  config.train.batch_size = 128
  config.train.learning_rate = 5e-4
  # Contrastive temperature tau: 0.1 BIWI/IAS/KS20, 0.5 KGBD, 0.15 CASIA-B.
  config.train.temperature = 0.1
  # L2 weight lambda on 0.5*||w||^2 of every array (biases too, as the authors).
  config.train.weight_decay = 0.02
  # Gradients are clipped by value to [-clip_value, clip_value].
  config.train.clip_value = 5.0
  # 'none' (run all epochs) or 'paper' (the authors' plateau rule, docs/method.md §5).
  config.train.early_stopping = 'none'
  # Batches are contiguous slices of the stored order (the contrastive loss uses
  # batch neighbours as positives). True visits the batches in a fresh seeded
  # order each epoch (each batch stays contiguous).
  config.train.shuffle_batches = False
  # Orbax checkpoint of the full train state every N steps (and at the end).
  config.train.checkpoint_every_steps = 500
  config.train.keep_checkpoints = 3
  # One metrics.jsonl line / progress line at most every N steps.
  config.train.log_every_steps = 50

  # ---------------------------------------------------------------- rn
  config.rn = ml_collections.ConfigDict()
  # Training epochs of the RN (300; KGBD 200, KS20 800, CASIA-B 1000).
  config.rn.epochs = 300
  # 'ap' (frame-level CAGEs, sequence score = mean of frame logits) or 'sc'
  # (sequence-level concatenation [f*768]).
  config.rn.manner = 'ap'
  # Model selection: 'val' (best epoch on a validation split of the training
  # people's sequences), 'fixed' (last epoch), 'paper' (best *test* epoch, as the
  # authors' code does; optimistic).
  config.rn.selection = 'val'
  # 'val' rule: share of each training person's sequences held out (a contiguous,
  # seeded run of whole sequences; every person keeps at least one for training).
  config.rn.val_fraction = 0.1
  # Mini-batch size in RN samples (frames for 'ap', sequences for 'sc'); the
  # incomplete last batch of each (reshuffled) epoch is dropped.
  config.rn.batch_size = 128
  # Adam (TF form) step size; no decay, no clipping, no weight decay.
  config.rn.learning_rate = 5e-4
  # Width of the RN's hidden layer.
  config.rn.hidden = 256
  # Epochs per compiled call (one lax.scan); progress is logged between calls.
  config.rn.epochs_per_call = 50
  # Score the test splits after every epoch: test-accuracy curves and the 'paper'
  # rule reported next to the chosen rule (one forward pass over the test CAGEs
  # per epoch; turn off when the test splits are much larger than train, e.g.
  # CASIA-B CVE). Always on for selection='paper'.
  config.rn.track_test = True

  # ---------------------------------------------------------------- eval
  config.eval = ml_collections.ConfigDict()
  # 'A' (classifier: Rank-k, nAUC), 'B' (probe -> gallery retrieval: Rank-1/5/10,
  # mAP), 'CME' (CASIA-B nearest-neighbour matching with the self-match rule),
  # comma-separated. On CASIA_B_match, 'B' runs as CME.
  config.eval.protocols = 'A,B'
  # Distance for retrieval and nearest-neighbour baselines: 'euclidean' or 'cosine'.
  config.eval.distance = 'euclidean'
  # Compute the raw-coordinate, bone-length and hand-crafted descriptor baselines.
  config.eval.baselines = True
  # Neighbours that vote in the protocol-A baselines (1 = nearest neighbour).
  config.eval.baseline_k = 1
  # Sequence-level CAGEs for retrieval (B, CME): 'concat' (flattened [f*D], the
  # sequence-level CAGE of docs/method.md §6) or 'mean' (mean over the f frames, [D]).
  config.eval.retrieval_features = 'concat'
  # Length of the retrieval CMC curves stored and plotted (B, CME).
  config.eval.cmc_max_rank = 50
  # Write PNG plots (CMC, ROC, RN accuracy) when matplotlib is installed.
  config.eval.plots = True
  # What is re-identified (docs/method.md §7.1): 'window' (each f-frame sequence,
  # the paper's protocols), 'walk' (a whole recording, all its windows as
  # evidence) or 'both'. Walk level needs the recording of every window; data
  # without recordings is scored at window level with a note ('walk' stops).
  config.eval.level = 'both'
  # Walk aggregation shown first and used for a walk-level headline: 'vote'
  # (majority of the windows' own decisions, the window-level RN argmax or
  # nearest gallery window; for CAGEs best or equal on the demo and GIST) or
  # 'mean' (mean of the windows' RN scores / CAGEs). Both are reported.
  config.eval.walk_aggregation = 'vote'
  # Test walks with fewer windows than this are left out of walk-level scores
  # and counted (one window is window-level evidence, not a walk).
  config.eval.min_walk_windows = 2
  return config


# A quick end-to-end check of a set-up: tiny model, few epochs, few sequences.
_SMOKE = {
    'model.hidden': 32,
    'data.max_sequences': 256,
    'data.synthetic.num_people': 6,
    'data.synthetic.recordings_per_person': 3,
    'data.synthetic.test_recordings_per_person': 1,
    'data.synthetic.frames_per_recording': 80,
    'train.epochs': 2,
    'train.batch_size': 32,
    'train.log_every_steps': 4,
    'train.checkpoint_every_steps': 8,
    'rn.epochs': 5,
    'rn.hidden': 32,
}
# Config arguments (``--config=configs/kgbd.py:smoke``, ``:released,smoke``):
# name -> fields it sets.
VARIANTS = {'smoke': _SMOKE, 'released': {'procedure': 'released'}}


def with_variant(config: ml_collections.ConfigDict,
                 arg: Optional[str]) -> ml_collections.ConfigDict:
  """Applies a config argument: '' (as is) or comma-separated VARIANTS names.

  Raises:
    ConfigError: an unknown variant name (the message lists the known ones).
  """
  for name in parse_list(arg or ''):
    if name not in VARIANTS:
      raise ConfigError(
          f'unknown config variant {name!r} (in the config argument '
          f'{arg!r}); known variants: {", ".join(VARIANTS)}, e.g. '
          '--config=configs/kgbd.py:smoke')
    for field, value in VARIANTS[name].items():
      *sections, key = field.split('.')
      section = config
      for part in sections:
        section = section[part]
      section[key] = value
  return config


def get_config(arg: Optional[str] = None) -> ml_collections.ConfigDict:
  """The defaults with the variants in ``arg`` applied."""
  return with_variant(base_config(), arg)


def resolve_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy with the derived fields filled in, the one place that does it.

  * every ``quirks.*`` left at None takes the procedure's default (on for
    'released', off for 'clean'), so one quirk set on the command line wins;
  * the deprecated ``data.center_sequences``, when set, becomes
    ``data.normalization`` ('center' / 'none') with a warning, and is cleared.

  Raises:
    ConfigError: an unknown procedure.
  """
  config = ml_collections.ConfigDict(config.to_dict())
  procedure = config.get('procedure', 'clean')
  _one_of(procedure, 'procedure', PROCEDURES)
  with config.unlocked():
    if 'quirks' not in config:
      config.quirks = ml_collections.ConfigDict()
    for field in QUIRKS.values():
      if config.quirks.get(field) is None:
        config.quirks[field] = procedure == 'released'
    data = config.data
    if 'normalization' not in data:
      data.normalization = 'none'
    if data.get('center_sequences') is not None:
      data.normalization = 'center' if data.center_sequences else 'none'
      logging.warning(
          'config.data.center_sequences is deprecated: read as '
          '--config.data.normalization=%s; use that field instead.',
          data.normalization)
    data.center_sequences = None
  return config


# On this dataset protocol B runs as CME (sge_jax.evaluate.protocols).
CME_DATASET = 'CASIA_B_match'


def quirk_label(field: str) -> str:
  """'extraction_batches' -> 'R1 extraction_batches'."""
  return next(f'{code} {name}' for code, name in QUIRKS.items() if name == field)


def runs_cme(config: ml_collections.ConfigDict, dataset: str) -> bool:
  """Whether the CME protocol runs: asked for, or B on the CME dataset."""
  protocols = {p.upper() for p in parse_list(config.eval.protocols)}
  return 'CME' in protocols or ('B' in protocols and dataset == CME_DATASET)


def quirk_applicability(config: ml_collections.ConfigDict,
                        dataset: str) -> dict[str, str]:
  """Quirk field -> '' when it can act on this resolved config with the data
  named ``dataset`` (the dataset trained or scored), else why it cannot.

  R12 (equal_id_counts) is a check and always applies.
  """
  model, quirks = config.model, config.get('quirks') or {}
  has_a = 'A' in {p.upper() for p in parse_list(config.eval.protocols)}
  plus = model.pretext == 'rev_rec_plus'
  trained_here = not config.get('encoder_workdir')
  needs_a = '' if has_a else "needs protocol A (it shapes the RN's rows)"
  needs_plus = '' if plus else 'needs model.pretext=rev_rec_plus'
  if plus and quirks.get('plus_from_rev_rec'):
    sorting = ("with R2 plus_from_rev_rec the sorting models' CAGEs are not "
               'used')
  else:
    sorting = ('' if model.pretext in ('sorting', 'rev_rec_plus')
               else 'no sorting pretext task')
  la_forward = model.attention == 'LA' and model.pretext in ('prediction',
                                                             'sorting')
  not_here = 'the encoders come from config.encoder_workdir'
  return {
      'extraction_batches': needs_a,
      'plus_from_rev_rec': needs_plus,
      'plus_test_copies': (needs_plus or needs_a or (
          '' if quirks.get('extraction_batches')
          else 'acts only with R1 extraction_batches on')),
      'fixed_rn_shuffle': needs_a,
      'full_test_batches': needs_a,
      'select_on_test': needs_a,
      'biwi_two_thirds': ('BIWI only' if dataset != 'BIWI'
                          else '' if trained_here else not_here),
      'reversed_la_mask': (
          'every LA task already reconstructs in reverse' if not la_forward
          else '' if trained_here else not_here),
      'redrawn_sorting': sorting,
      'second_nearest': '' if runs_cme(config, dataset) else 'CME only',
      'equal_id_counts': '',
  }


def quirks_on(config: ml_collections.ConfigDict, dataset: str) -> list[str]:
  """'R1 extraction_batches', ... for every quirk a resolved config turns on
  that can act with the data named ``dataset`` (``quirk_applicability``)."""
  quirks = config.get('quirks') or {}
  reasons = quirk_applicability(config, dataset)
  return [quirk_label(field) for field in QUIRKS.values()
          if quirks.get(field) and not reasons[field]]


def quirks_not_applicable(config: ml_collections.ConfigDict,
                          dataset: str) -> dict[str, str]:
  """{'R3 plus_test_copies': why, ...} for the quirks switched on that cannot
  act with the data named ``dataset``."""
  quirks = config.get('quirks') or {}
  reasons = quirk_applicability(config, dataset)
  return {quirk_label(field): reasons[field] for field in QUIRKS.values()
          if quirks.get(field) and reasons[field]}


# ----------------------------------------------------------------- parsing


def parse_list(text: str) -> list[str]:
  return [item.strip() for item in str(text).split(',') if item.strip()]


def invalid(field: str, value: Any, expected: str) -> ConfigError:
  """The error for a bad ``config.<field>``: the value, what is expected, the flag."""
  return ConfigError(f'config.{field}={value!r} is invalid: expected {expected}. '
                     f'Override it with --config.{field}=...')


def parse_stages(text: str) -> list[str]:
  stages = parse_list(text)
  unknown = [s for s in stages if s not in STAGES]
  if unknown or not stages:
    raise invalid('stages', text,
                  f'a comma-separated subset of {", ".join(STAGES)}')
  return [s for s in STAGES if s in stages]


# Seeds give distinct PRNG keys (jax.random.key keeps 32 bits) and NumPy seed
# sequences (no negatives) exactly in this range.
MAX_SEED = 2**32 - 1
_SEED_RANGE = f'an integer from 0 to {MAX_SEED} (2**32 - 1)'


def _is_seed(value) -> bool:
  return (isinstance(value, int) and not isinstance(value, bool)
          and 0 <= value <= MAX_SEED)


def parse_seeds(config: ml_collections.ConfigDict) -> list[int]:
  """``config.seeds`` ('0,1,2', '0-7' or '0-3,10') as ints, or
  ``[config.seed]`` when empty.

  Raises:
    ConfigError: not a list of seeds in 0..MAX_SEED, or a seed repeated.
  """
  items = parse_list(config.seeds)
  if not items:
    return [int(config.seed)]
  expected = (f'comma-separated seeds or ranges of seeds, each {_SEED_RANGE}, '
              'e.g. 0,1,2 or 0-7')
  seeds = []
  for item in items:
    first, dash, last = item.partition('-')
    try:
      bounds = [int(first)] + ([int(last)] if dash else [])
    except ValueError:
      raise invalid('seeds', config.seeds, expected) from None
    if not all(_is_seed(bound) for bound in bounds) or bounds[-1] < bounds[0]:
      raise invalid('seeds', config.seeds, expected)
    if bounds[-1] - bounds[0] >= 10_000:
      raise invalid('seeds', config.seeds,
                    f'{expected}; a range of at most 10000 seeds')
    seeds.extend(range(bounds[0], bounds[-1] + 1))
  if len(set(seeds)) != len(seeds):
    raise invalid('seeds', config.seeds, 'each seed once (it repeats a seed)')
  return seeds


def is_multi_seed(config: ml_collections.ConfigDict) -> bool:
  return bool(parse_list(config.seeds))


def data_seed(config: ml_collections.ConfigDict) -> int:
  """The seed the data is drawn with: ``data.seed``, or the root ``seed``."""
  seed = int(config.data.get('seed', -1))
  return int(config.seed) if seed < 0 else seed


def _require(condition: bool, field: str, value: Any, expected: str) -> None:
  if not condition:
    raise invalid(field, value, expected)


def _one_of(value, field: str, allowed: Iterable[str]) -> None:
  allowed = tuple(allowed)
  _require(value in allowed, field, value, f'one of {", ".join(allowed)}')


def _int_at_least(value, field: str, minimum: int = 1) -> None:
  _require(isinstance(value, int) and not isinstance(value, bool)
           and value >= minimum, field, value, f'an integer >= {minimum}')


def _positive_float(value, field: str, allow_zero: bool = False) -> None:
  ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
        and math.isfinite(value) and (value >= 0 if allow_zero else value > 0))
  _require(ok, field, value, 'a finite number ' + ('>= 0' if allow_zero else '> 0'))


# ----------------------------------------------------------------- field types

# What every saved config.json holds (every version of the job wrote them).
SAVED_CONFIG_SECTIONS = ('seed', 'data', 'model', 'train', 'rn', 'eval')


def _expected_kind(default: Any) -> str:
  """What a field whose default is ``default`` must hold, in words."""
  if default is None:                     # a bool that may be left unset
    return 'true, false or None'
  if isinstance(default, bool):
    return 'true or false'
  if isinstance(default, int):
    return 'an integer'
  if isinstance(default, float):
    return 'a number'
  if isinstance(default, str):
    return 'a string'
  return 'a section of fields'


def _fits(value: Any, default: Any) -> bool:
  """Whether ``value`` has the type of a field whose default is ``default``
  (an integer may stand for a float, never a float for an integer)."""
  if default is None:
    return value is None or isinstance(value, bool)
  if isinstance(default, bool):
    return isinstance(value, bool)
  if isinstance(default, int):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
  if isinstance(default, float):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
  if isinstance(default, str):
    return isinstance(value, str)
  return _is_section(value)


def _is_section(value: Any) -> bool:
  return isinstance(value, (Mapping, ml_collections.ConfigDict))


def mistyped_field(config: Mapping[str, Any]
                   ) -> Optional[tuple[str, Any, str]]:
  """The first field of ``config`` (a ConfigDict or a dict read from JSON)
  whose value has another type than ``base_config()`` gives it, as (dotted
  field, value, what is expected); None when every field fits. Fields the
  base config lacks, and fields ``config`` lacks, are not checked."""
  def first_in(section: Mapping[str, Any], defaults: Mapping[str, Any],
               prefix: str):
    for key, default in defaults.items():
      if key not in section:
        continue
      value = section[key]
      if not _fits(value, default):
        return f'{prefix}{key}', value, _expected_kind(default)
      if _is_section(default):
        found = first_in(value, default, f'{prefix}{key}.')
        if found:
          return found
    return None

  return first_in(config, base_config().to_dict(), '')


def saved_config_problem(saved: Mapping[str, Any]) -> Optional[str]:
  """What makes a config.json that parsed as a JSON object unusable as the
  record of a run (a missing section, a field of the wrong type), or None."""
  for section in SAVED_CONFIG_SECTIONS:
    if section not in saved:
      return f'it has no {section!r} field'
  mistyped = mistyped_field(saved)
  if mistyped:
    field, value, expected = mistyped
    return f'its {field} is {value!r}, not {expected}'
  return None


# ----------------------------------------------------------------- typed settings


@dataclasses.dataclass(frozen=True)
class RNSettings:
  """The recognition network's settings (``config.rn`` plus the root seed).

  Attributes:
    manner: 'ap' or 'sc'.
    selection: 'val', 'fixed' or 'paper'.
    epochs: epochs to train.
    batch_size: samples per mini-batch (frames for 'ap', sequences for 'sc');
      clamped to the number of training samples.
    learning_rate: Adam step size.
    hidden: hidden width.
    val_fraction: share of each person's training sequences held out when
      selection = 'val'.
    epochs_per_call: epochs run per compiled call (progress is logged between
      calls).
    track_test: score the test splits after every epoch (test-accuracy curves
      and the 'paper' rule next to the chosen one); forced on for 'paper'.
    seed: the root seed (config.seed).
    fixed_shuffle: R4, one shuffle of the training samples for every epoch.
    test_ties: which of several best test epochs the 'paper' rule keeps:
      'first' (strict '>') or 'last' ('>=', R6 outside IAS).
  """
  manner: str = 'ap'
  selection: str = 'val'
  epochs: int = 300
  batch_size: int = 128
  learning_rate: float = 5e-4
  hidden: int = 256
  val_fraction: float = 0.1
  epochs_per_call: int = 50
  track_test: bool = True
  seed: int = 0
  fixed_shuffle: bool = False
  test_ties: str = 'first'

  def __post_init__(self):
    def require(condition, field, expected):
      _require(condition, f'rn.{field}', getattr(self, field), expected)

    require(self.manner in MANNERS, 'manner', f'one of {", ".join(MANNERS)}')
    require(self.selection in SELECTION_RULES, 'selection',
            f'one of {", ".join(SELECTION_RULES)}')
    require(self.test_ties in ('first', 'last'), 'test_ties', 'first or last')
    for field in ('epochs', 'batch_size', 'hidden', 'epochs_per_call'):
      value = getattr(self, field)
      require(isinstance(value, int) and value >= 1, field, 'an integer >= 1')
    require(math.isfinite(self.learning_rate) and self.learning_rate > 0,
            'learning_rate', 'a finite number > 0')
    if self.selection == 'val':
      require(0.0 < self.val_fraction < 1.0, 'val_fraction',
              "a fraction in (0, 1) when selection='val'")

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict,
                  dataset: Optional[str] = None) -> 'RNSettings':
    """The settings of a config; quirks R4 and R6 (``select_on_test`` picks
    the 'paper' rule with the released ties: last, first on IAS) apply.
    ``dataset`` names the data scored (default ``config.data.name``)."""
    rn = config.rn
    quirks = config.get('quirks') or {}
    on_test = bool(quirks.get('select_on_test'))
    if dataset is None:
      dataset = str((config.get('data') or {}).get('name', ''))
    is_ias = dataset == 'IAS'
    return cls(manner=str(rn.manner),
               selection='paper' if on_test else str(rn.selection),
               fixed_shuffle=bool(quirks.get('fixed_rn_shuffle')),
               test_ties='last' if on_test and not is_ias else 'first',
               epochs=int(rn.epochs), batch_size=int(rn.batch_size),
               learning_rate=float(rn.learning_rate), hidden=int(rn.hidden),
               val_fraction=float(rn.get('val_fraction', 0.1)),
               epochs_per_call=int(rn.get('epochs_per_call', 50)),
               track_test=bool(rn.get('track_test', True)),
               seed=int(config.seed))


@dataclasses.dataclass(frozen=True)
class EvalSettings:
  """The evaluation's settings (``config.eval``).

  Attributes:
    protocols: requested protocols, a subset of PROTOCOLS in that order.
    distance: 'euclidean' or 'cosine' (retrieval and the baselines' k-NN).
    baselines: run the hand-crafted baselines.
    baseline_k: neighbours that vote in the protocol-A baselines (1 = NN).
    retrieval_features: 'concat' or 'mean'.
    cmc_max_rank: length of the stored retrieval CMC curves.
    plots: write PNG plots when matplotlib is installed.
    level: 'window', 'walk' or 'both' (what is re-identified).
    walk_aggregation: 'vote' or 'mean', the walk aggregation listed first.
    min_walk_windows: test walks with fewer windows are counted, not scored.
  """
  protocols: tuple[str, ...] = ('A', 'B')
  distance: str = 'euclidean'
  baselines: bool = True
  baseline_k: int = 1
  retrieval_features: str = 'concat'
  cmc_max_rank: int = 50
  plots: bool = True
  level: str = 'both'
  walk_aggregation: str = 'vote'
  min_walk_windows: int = 2

  @property
  def windows(self) -> bool:
    """Window-level entries are reported."""
    return self.level in ('window', 'both')

  @property
  def walks(self) -> bool:
    """Walk-level entries are asked for."""
    return self.level in ('walk', 'both')

  @property
  def aggregations(self) -> tuple[str, ...]:
    """Both walk aggregations, the configured one first."""
    return (self.walk_aggregation,) + tuple(
        a for a in WALK_AGGREGATIONS if a != self.walk_aggregation)

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> 'EvalSettings':
    section = config.eval
    requested = [p.upper() for p in parse_list(section.protocols)]
    unknown = [p for p in requested if p not in PROTOCOLS]
    _require(requested and not unknown, 'eval.protocols', section.protocols,
             f'a comma-separated subset of {", ".join(PROTOCOLS)}')
    settings = cls(
        protocols=tuple(p for p in PROTOCOLS if p in requested),
        distance=str(section.distance),
        baselines=bool(section.baselines),
        baseline_k=int(section.get('baseline_k', 1)),
        retrieval_features=str(section.get('retrieval_features', 'concat')),
        cmc_max_rank=int(section.get('cmc_max_rank', 50)),
        plots=bool(section.get('plots', True)),
        level=str(section.get('level', 'both')),
        walk_aggregation=str(section.get('walk_aggregation', 'vote')),
        min_walk_windows=section.get('min_walk_windows', 2))
    _one_of(settings.distance, 'eval.distance', DISTANCES)
    _one_of(settings.retrieval_features, 'eval.retrieval_features',
            RETRIEVAL_FEATURES)
    _one_of(settings.level, 'eval.level', EVAL_LEVELS)
    _one_of(settings.walk_aggregation, 'eval.walk_aggregation',
            WALK_AGGREGATIONS)
    for field in ('baseline_k', 'cmc_max_rank', 'min_walk_windows'):
      _int_at_least(getattr(settings, field), f'eval.{field}')
    _require(settings.level != 'walk' or {'A', 'B'} & set(settings.protocols),
             'eval.level', settings.level,
             "'window' or 'both': walks are scored by protocols A and B, and "
             f'eval.protocols={section.protocols!r} has neither')
    return settings


# ----------------------------------------------------------------- the whole config


def validate_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ConfigError naming the first bad field and the allowed values.

  ``num_devices`` is the global device count: every device of every process
  of the job shares each batch of ``train.batch_size``. Checks the config as
  ``resolve_config`` makes it (quirks and normalisation filled in).
  """
  config = resolve_config(config)
  mistyped = mistyped_field(config)
  if mistyped:
    raise invalid(*mistyped)
  parse_stages(config.stages)
  _require(_is_seed(config.seed), 'seed', config.seed, _SEED_RANGE)
  parse_seeds(config)
  _one_of(config.procedure, 'procedure', PROCEDURES)
  for field in QUIRKS.values():
    _require(isinstance(config.quirks[field], bool), f'quirks.{field}',
             config.quirks[field], 'True or False (resolve_config fills None)')
  data, model, train = config.data, config.model, config.train
  _one_of(data.format, 'data.format', FORMATS)
  _one_of(data.normalization, 'data.normalization', NORMALIZATIONS)
  _int_at_least(data.length, 'data.length', 2)
  if data.format == 'npz':
    _require(bool(data.path), 'data.path', data.path, 'the .npz file to read')
  _int_at_least(data.max_sequences, 'data.max_sequences', 0)
  _require(data.seed == -1 or _is_seed(data.seed), 'data.seed', data.seed,
           f'-1 (follow config.seed) or {_SEED_RANGE}')
  _one_of(model.attention, 'model.attention', ATTENTION_TYPES)
  _one_of(model.pretext, 'model.pretext', PRETEXTS)
  # rev_rec_plus fixes its tasks' attention (rev_rec LA, prediction and sorting
  # BA); a different setting would be ignored yet recorded in the outputs.
  _require(model.pretext != 'rev_rec_plus' or model.attention == 'LA',
           'model.attention', model.attention,
           "LA with model.pretext=rev_rec_plus (its prediction and sorting "
           "models always use BA)")
  _one_of(model.decoder_input, 'model.decoder_input', DECODER_INPUT_MODES)
  _int_at_least(model.hidden, 'model.hidden')
  _int_at_least(model.num_layers, 'model.num_layers')
  _positive_float(model.contrastive_weight, 'model.contrastive_weight',
                  allow_zero=True)
  _int_at_least(train.epochs, 'train.epochs')
  _int_at_least(train.batch_size, 'train.batch_size', 2)
  _require(train.batch_size % num_devices == 0, 'train.batch_size',
           train.batch_size, f'a multiple of the {num_devices} devices (of '
           'all processes) that share each batch')
  _positive_float(train.learning_rate, 'train.learning_rate')
  _positive_float(train.temperature, 'train.temperature')
  _positive_float(train.weight_decay, 'train.weight_decay', allow_zero=True)
  _positive_float(train.clip_value, 'train.clip_value')
  _one_of(train.early_stopping, 'train.early_stopping', EARLY_STOPPING_RULES)
  _int_at_least(train.checkpoint_every_steps, 'train.checkpoint_every_steps')
  _int_at_least(train.keep_checkpoints, 'train.keep_checkpoints')
  _int_at_least(train.log_every_steps, 'train.log_every_steps')
  # The recognition and evaluation sections are checked here too, so a bad
  # value fails before hours of encoder training.
  RNSettings.from_config(config)
  EvalSettings.from_config(config)


# ----------------------------------------------------------------- encoder identity

# The sections whose fields define the trained encoders.
ENCODER_SECTIONS = ('seed', 'data', 'model', 'train')
# Fields under those sections that only say how often to log and checkpoint:
# they do not change the trained encoders (a resumed run ends bit-identical).
BOOKKEEPING_FIELDS = frozenset({'train.checkpoint_every_steps',
                                'train.keep_checkpoints',
                                'train.log_every_steps'})
# Fields that may change between runs in one workdir without invalidating the
# trained encoders: more epochs continue training, a new stopping rule applies
# from the next epoch on.
RESUMABLE_FIELDS = BOOKKEEPING_FIELDS | {'train.epochs', 'train.early_stopping'}


def flatten(tree: dict, prefix: str = '') -> dict[str, Any]:
  """{'a': {'b': 1}} -> {'a.b': 1}."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def _encoder_tree(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The encoder-defining fields as a tree, in a form that does not change
  for configs written before ``data.seed``, ``data.normalization`` and
  ``quirks`` existed: the default data seed is left out, normalisation
  'none'/'center' is written as the old ``center_sequences`` boolean, and
  encoder quirks appear only when on. (Old workdirs resume and the clean demo
  keeps its config_hash.)"""
  tree = {name: json.loads(config[name].to_json())
          if isinstance(config[name], ml_collections.ConfigDict)
          else config[name] for name in ENCODER_SECTIONS}
  data = tree['data']
  if data.get('seed', -1) == -1:     # the default: the data follow `seed`
    data.pop('seed', None)
  normalization = data.pop('normalization', None)
  centred = data.pop('center_sequences', None)
  if normalization is None:
    normalization = 'center' if centred else 'none'
  if normalization in ('none', 'center'):
    data['center_sequences'] = normalization == 'center'
  else:
    data['normalization'] = normalization
  quirks = config.get('quirks') or {}
  on = {field: True for field in ENCODER_QUIRKS if quirks.get(field)}
  if on:
    tree['quirks'] = on
  return tree


def _encoder_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The encoder-defining fields, flattened; a field the config predates
  counts as its default (fields are only added with defaults that keep the old
  behaviour)."""
  flat = flatten(_encoder_tree(base_config()))
  flat.update(flatten(_encoder_tree(config)))
  return flat


def encoder_differences(old: ml_collections.ConfigDict,
                        new: ml_collections.ConfigDict) -> list[str]:
  """Encoder-defining fields that differ between two configs (sorted)."""
  old_fields, new_fields = _encoder_fields(old), _encoder_fields(new)
  return sorted(field for field in set(old_fields) | set(new_fields)
                if field not in RESUMABLE_FIELDS
                and old_fields.get(field) != new_fields.get(field))


# The sections a re-evaluation of finished encodings can change
# (``python -m sge_jax.evaluate``); the other fields made the encodings.
REEVALUATION_SECTIONS = ('rn', 'eval')


def _result_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The fields outside the encoder identity that shape a run's results,
  flattened: rn.*, eval.*, the procedure, every quirk that is not an encoder
  quirk (None read as its procedure's default) and encoder_workdir. A field
  the config predates counts as its default."""
  defaults = base_config()
  fields = {}
  for name in REEVALUATION_SECTIONS:
    fields.update(flatten(defaults[name].to_dict(), f'{name}.'))
    section = config.get(name)
    if section is not None:
      fields.update(flatten(json.loads(section.to_json()), f'{name}.'))
  procedure = config.get('procedure', 'clean')
  quirks = config.get('quirks') or {}
  fields['procedure'] = procedure
  for field in QUIRKS.values():
    if field not in ENCODER_QUIRKS:
      value = quirks.get(field)
      fields[f'quirks.{field}'] = (procedure == 'released' if value is None
                                   else bool(value))
  fields['encoder_workdir'] = str(config.get('encoder_workdir') or '')
  return fields


def result_differences(old: ml_collections.ConfigDict,
                       new: ml_collections.ConfigDict) -> list[str]:
  """Fields outside the encoder identity that differ between two configs
  and change the results (``_result_fields``), sorted."""
  old_fields, new_fields = _result_fields(old), _result_fields(new)
  return sorted(field for field in new_fields
                if old_fields.get(field) != new_fields[field])


def config_hash(config: ml_collections.ConfigDict) -> str:
  """Short hash of what determines the encoders (ENCODER_SECTIONS without
  BOOKKEEPING_FIELDS)."""
  encoder_fields = _encoder_tree(config)
  for field in BOOKKEEPING_FIELDS:
    section, key = field.split('.')
    encoder_fields[section].pop(key, None)
  text = json.dumps(encoder_fields, sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]
