"""The typed, frozen settings the stages read, one dataclass per section.

A config is resolved into them once, at the job's entry
(``sge_jax.config.resolution.resolve``): ``JobSettings`` (the seeds) holds one
``RunSettings`` per seed, and that holds one settings object per stage
(``DataSettings``, ``ModelSettings``, ``TrainSettings``, ``RNSettings``,
``EvalSettings``), the quirks (``QuirkSettings``), the devices
(``ParallelSettings``) and the trained encoders of a transfer run
(``TransferSettings``). No stage reads a ConfigDict. ``RNSettings`` and
``EvalSettings`` check their own values (``RNSettings.from_config``,
``EvalSettings.from_config``); the other sections are checked by
``validate_config`` first.

A section read from a saved config.json written before one of its fields
existed takes that field's default from ``base_config``.

Imports no JAX.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Any, Mapping, Optional

import ml_collections

from sge_jax.config.checks import (data_seed, int_at_least, one_of, parse_list,
                                   require)
from sge_jax.config.fields import (AUTO_WALK_AGGREGATION, DISTANCES,
                                   EVAL_LEVELS, MANNERS, PROTOCOLS, QUIRKS,
                                   RETRIEVAL_FEATURES, SELECTION_RULES,
                                   WALK_AGGREGATIONS, base_config)

_TYPES = {'int': int, 'float': float, 'str': str, 'bool': bool}


def _read(cls, section: Optional[Mapping[str, Any]],
          defaults: Mapping[str, Any], **given: Any):
  """``cls`` with each field not in ``given`` read from the config section
  ``section`` (``defaults``' value where the section lacks the field), as the
  field's type (int, float, str or bool)."""
  section = section if section is not None else {}
  values = dict(given)
  for field in dataclasses.fields(cls):
    if field.name not in given:
      value = (section[field.name] if field.name in section
               else defaults[field.name])
      values[field.name] = _TYPES[field.type](value)
  return cls(**values)


# ----------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class SyntheticSettings:
  """The built-in procedural walking set (``config.data.synthetic``).

  Attributes:
    num_people: people P.
    recordings_per_person: training recordings per person.
    test_recordings_per_person: test recordings per person.
    frames_per_recording: frames of every recording (cut into windows of f).
  """
  num_people: int
  recordings_per_person: int
  test_recordings_per_person: int
  frames_per_recording: int


@dataclasses.dataclass(frozen=True)
class DataSettings:
  """What data the run reads and how it is prepared (``config.data``).

  Attributes:
    format: 'authors', 'npz' or 'synthetic'.
    root: the authors' layout folder (their ``Datasets/``).
    name: dataset name (KGBD, BIWI, IAS, KS20, CASIA_B, CASIA_B_match, ...).
    length: frames per sequence, f.
    probe: the test splits to keep (none = every one), from the
      comma-separated ``data.probe``.
    view: view folder or CASIA-B CME condition pair ('nm.bg').
    path: the .npz file ('npz' format).
    split_field: the per-sequence field that splits an .npz ('trial', 'view').
    train_values: the values of ``split_field`` that go to train ('1-10').
    max_sequences: sequences kept per split at most (0 = all).
    normalization: 'none', 'root_joint' or 'center'.
    seed: the seed the data is drawn with, resolved: ``data.seed``, or the
      root seed where that is -1.
    synthetic: the synthetic set's size.
  """
  format: str
  root: str
  name: str
  length: int
  probe: tuple[str, ...]
  view: str
  path: str
  split_field: str
  train_values: str
  max_sequences: int
  normalization: str
  seed: int
  synthetic: SyntheticSettings

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> 'DataSettings':
    """The data settings of a resolved config (``resolve_config``)."""
    defaults = base_config().data
    section = config.data
    synthetic = _read(SyntheticSettings, section.get('synthetic'),
                      defaults.synthetic)
    probe = section.get('probe', defaults.probe)
    return _read(cls, section, defaults, seed=data_seed(config),
                 probe=tuple(parse_list(probe)), synthetic=synthetic)


# ----------------------------------------------------------------- model, train


@dataclasses.dataclass(frozen=True)
class ModelSettings:
  """The encoders' architecture and pretext tasks (``config.model``).

  Attributes:
    attention: 'LA' or 'BA'.
    pretext: 'rev_rec', 'prediction', 'sorting' or 'rev_rec_plus'.
    hidden: hidden size k of every LSTM and of the attention/projector layers.
    num_layers: LSTM layers in the encoder and in the decoder.
    decoder_input: 'zeros' or 'shifted_target'.
    contrastive_weight: weight of the locality-aware contrastive loss.
  """
  attention: str
  pretext: str
  hidden: int
  num_layers: int
  decoder_input: str
  contrastive_weight: float

  @classmethod
  def from_section(cls, section: Optional[Mapping[str, Any]]
                   ) -> 'ModelSettings':
    """The settings of a ``model`` section (a config's, or a saved one's)."""
    return _read(cls, section, base_config().model)


@dataclasses.dataclass(frozen=True)
class TrainSettings:
  """The encoders' training (``config.train``).

  Attributes:
    epochs: epochs to train.
    batch_size: sequences per step, shared by every device of the job.
    learning_rate: Adam step size.
    temperature: contrastive temperature tau.
    weight_decay: L2 weight lambda on 0.5*||w||^2 of every array.
    clip_value: gradients are clipped to [-clip_value, clip_value].
    early_stopping: 'none' or 'paper'.
    shuffle_batches: visit the (contiguous) batches in a seeded order per epoch.
    checkpoint_every_steps: steps between checkpoints.
    keep_checkpoints: checkpoints kept.
    log_every_steps: steps between progress lines (and per compiled call).
    tensorboard: also write the metrics log's scalars as TensorBoard event
      files (``sge_jax.workdir.tensorboard``).
  """
  epochs: int
  batch_size: int
  learning_rate: float
  temperature: float
  weight_decay: float
  clip_value: float
  early_stopping: str
  shuffle_batches: bool
  checkpoint_every_steps: int
  keep_checkpoints: int
  log_every_steps: int
  tensorboard: bool

  @classmethod
  def from_section(cls, section: Optional[Mapping[str, Any]]
                   ) -> 'TrainSettings':
    return _read(cls, section, base_config().train)


@dataclasses.dataclass(frozen=True)
class QuirkSettings:
  """The released-code behaviours switched on (``config.quirks`` resolved:
  one bool per ``QUIRKS`` field; all off is the clean procedure)."""
  extraction_batches: bool = False
  plus_from_rev_rec: bool = False
  plus_test_copies: bool = False
  fixed_rn_shuffle: bool = False
  full_test_batches: bool = False
  select_on_test: bool = False
  biwi_two_thirds: bool = False
  reversed_la_mask: bool = False
  redrawn_sorting: bool = False
  second_nearest: bool = False
  equal_id_counts: bool = False

  @classmethod
  def from_section(cls, section: Optional[Mapping[str, Any]]
                   ) -> 'QuirkSettings':
    """The quirks of a resolved ``quirks`` section; a field that is missing
    or None (a config.json written before it existed) is off."""
    section = section if section is not None else {}
    return cls(**{field: bool(section.get(field)) for field in QUIRKS.values()})


# ----------------------------------------------------------------- rn, eval


def test_ties(select_on_test: bool, dataset: str) -> str:
  """Which of several best test epochs the 'paper' rule keeps when scoring
  the data named ``dataset``: with R6 (``select_on_test``) the last, as the
  released code does, but the first on IAS; otherwise the first."""
  return 'last' if select_on_test and dataset != 'IAS' else 'first'


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
    def check(condition, field, expected):
      require(condition, f'rn.{field}', getattr(self, field), expected)

    check(self.manner in MANNERS, 'manner', f'one of {", ".join(MANNERS)}')
    check(self.selection in SELECTION_RULES, 'selection',
          f'one of {", ".join(SELECTION_RULES)}')
    check(self.test_ties in ('first', 'last'), 'test_ties', 'first or last')
    for field in ('epochs', 'batch_size', 'hidden', 'epochs_per_call'):
      value = getattr(self, field)
      check(isinstance(value, int) and value >= 1, field, 'an integer >= 1')
    check(math.isfinite(self.learning_rate) and self.learning_rate > 0,
          'learning_rate', 'a finite number > 0')
    if self.selection == 'val':
      check(0.0 < self.val_fraction < 1.0, 'val_fraction',
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
    return cls(manner=str(rn.manner),
               selection='paper' if on_test else str(rn.selection),
               fixed_shuffle=bool(quirks.get('fixed_rn_shuffle')),
               test_ties=test_ties(on_test, dataset),
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
    walk_aggregation: 'vote', 'mean' or 'auto' (per protocol,
      ``AUTO_WALK_AGGREGATION``): the walk aggregation listed first.
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
  walk_aggregation: str = 'auto'
  min_walk_windows: int = 2

  @property
  def windows(self) -> bool:
    """Window-level entries are reported."""
    return self.level in ('window', 'both')

  @property
  def walks(self) -> bool:
    """Walk-level entries are asked for."""
    return self.level in ('walk', 'both')

  def aggregations(self, protocol: str) -> tuple[str, ...]:
    """Both walk aggregations of ``protocol`` ('A' or 'B'), the configured
    one first."""
    first = (AUTO_WALK_AGGREGATION[protocol] if self.walk_aggregation == 'auto'
             else self.walk_aggregation)
    return (first,) + tuple(a for a in WALK_AGGREGATIONS if a != first)

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> 'EvalSettings':
    section = config.eval
    requested = [p.upper() for p in parse_list(section.protocols)]
    unknown = [p for p in requested if p not in PROTOCOLS]
    require(requested and not unknown, 'eval.protocols', section.protocols,
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
        walk_aggregation=str(section.get('walk_aggregation', 'auto')),
        min_walk_windows=section.get('min_walk_windows', 2))
    one_of(settings.distance, 'eval.distance', DISTANCES)
    one_of(settings.retrieval_features, 'eval.retrieval_features',
           RETRIEVAL_FEATURES)
    one_of(settings.level, 'eval.level', EVAL_LEVELS)
    one_of(settings.walk_aggregation, 'eval.walk_aggregation',
           ('auto',) + WALK_AGGREGATIONS)
    for field in ('baseline_k', 'cmc_max_rank', 'min_walk_windows'):
      int_at_least(getattr(settings, field), f'eval.{field}')
    require(settings.level != 'walk' or {'A', 'B'} & set(settings.protocols),
            'eval.level', settings.level,
            "'window' or 'both': walks are scored by protocols A and B, and "
            f'eval.protocols={section.protocols!r} has neither')
    return settings



# ----------------------------------------------------------------- the run


@dataclasses.dataclass(frozen=True)
class ParallelSettings:
  """How the job's training uses the devices (``config.train.parallel``,
  resolved).

  Attributes:
    num_devices: n, every device of every process.
    mode: 'data': one seed after another, each training batch of
      ``train.batch_size`` shared by the n devices; 'seeds': every seed of the
      job at once, ``seeds_per_device`` per device, each on its whole batch
      (``sge_jax.train.seed_stack``).
    automatic: 'seeds' was chosen by 'auto', so a stack that does not fit in
      memory falls back to 'data' (an explicit 'seeds' stops instead).
  """
  num_devices: int
  mode: str = 'data'
  automatic: bool = False

  def seeds_per_device(self, num_seeds: int) -> int:
    """c = ceil(S / n): the seeds each device trains in 'seeds' mode."""
    return -(-num_seeds // self.num_devices)


@dataclasses.dataclass(frozen=True)
class TransferSettings:
  """The trained encoders a transfer run uses (``config.encoder_workdir``),
  read once from their run's config.json.

  Attributes:
    workdir: the workdir that holds them (its ``checkpoints/``).
    dataset: the data they were trained on (that run's ``data.name``).
    length: the sequence length f they were trained on.
    model: their architecture and pretext tasks.
    model_record: that run's ``model`` section as its config.json holds it,
      JSON text (a transfer run's config.json records it).
  """
  workdir: pathlib.Path
  dataset: str
  length: int
  model: ModelSettings
  model_record: str


@dataclasses.dataclass(frozen=True)
class RunSettings:
  """Everything one run (one seed) reads: resolved and checked when the job
  starts (``resolve``), or read from a finished run's config.json for a
  re-evaluation (``run_settings``: only rn.* and eval.* checked again).

  Attributes:
    seed: the root seed of the run.
    stages: the stages to run, in order (a subset of STAGES).
    encoder_workdir: ``config.encoder_workdir`` as given ('' = train here).
    procedure: 'clean' or 'released'.
    quirks: the released-code behaviours switched on.
    data, model, train, rn, eval: the stages' settings; ``model`` is that of
      the encoders used (the transferred ones for a transfer run).
    parallel: the devices of the job.
    config_hash: the short hash of what determines the encoders
      (``identity.config_hash`` of ``record``).
    record: the run's resolved config as its config.json records it, JSON
      text (the run identity is compared on it; ``ConfigDict(json.loads(
      record))`` gives it back).
    transfer: the encoders of a transfer run, once read (``with_transfer``);
      None when the encoders are trained here.
  """
  seed: int
  stages: tuple[str, ...]
  encoder_workdir: str
  procedure: str
  quirks: QuirkSettings
  data: DataSettings
  model: ModelSettings
  train: TrainSettings
  rn: RNSettings
  eval: EvalSettings
  parallel: ParallelSettings
  config_hash: str
  record: str
  transfer: Optional[TransferSettings] = None

  @property
  def trains_here(self) -> bool:
    """The encoders are trained in this run (no ``encoder_workdir``)."""
    return not self.encoder_workdir


@dataclasses.dataclass(frozen=True)
class JobSettings:
  """The whole job: one run, or one per seed of ``config.seeds``.

  Attributes:
    seeds: the seeds run, in order.
    multi_seed: whether ``config.seeds`` asks for several runs (each in
      ``<workdir>/seed_<s>/``, aggregated at the top).
    seeds_field: ``config.seeds`` as given, for messages.
    runs: one RunSettings per seed, in the order of ``seeds``.
  """
  seeds: tuple[int, ...]
  multi_seed: bool
  seeds_field: str
  runs: tuple[RunSettings, ...]
