"""Every config field with its default and meaning, and the allowed choices.

``base_config()`` lists every field with its default and a comment saying what
it does: this is the field documentation. The dataset configs in ``configs/``
start from it and override what differs, and every command line
(``launch.py``, ``python -m sge_jax.evaluate``, ``python -m sge_jax.ablate``)
reads the same fields.

Imports no JAX: a config can be built and checked before anything heavy loads.
"""

from __future__ import annotations

import ml_collections

# ----------------------------------------------------------------- choices

STAGES = ('train', 'encode', 'evaluate')
FORMATS = ('authors', 'npz', 'synthetic')
ATTENTION_TYPES = ('LA', 'BA')
PRETEXTS = ('rev_rec', 'prediction', 'sorting', 'rev_rec_plus')
DECODER_INPUT_MODES = ('zeros', 'shifted_target')
EARLY_STOPPING_RULES = ('none', 'paper')
PARALLEL_MODES = ('auto', 'data', 'seeds')
MANNERS = ('ap', 'sc')
SELECTION_RULES = ('val', 'fixed', 'paper')
# The protocol registry: each name is implemented by
# sge_jax/evaluate/protocol_<name>.py (lower case); they run in this order.
PROTOCOLS = ('A', 'B', 'CME')
DISTANCES = ('euclidean', 'cosine')
RETRIEVAL_FEATURES = ('concat', 'mean')
EVAL_LEVELS = ('window', 'walk', 'both')
WALK_AGGREGATIONS = ('vote', 'mean')
# eval.walk_aggregation 'auto': the aggregation listed first, per protocol.
AUTO_WALK_AGGREGATION = {'A': 'mean', 'B': 'vote'}
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

# On this dataset protocol B runs as CME (sge_jax.evaluate.protocols).
CME_DATASET = 'CASIA_B_match'


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
  # How the devices are used: 'data' (one seed after another, each global batch
  # split over every device of every process), 'seeds' (every seed of `seeds` at
  # once as one compiled program: the seeds split over the n devices, ceil(S/n)
  # per device, each training on its whole batch; needs `seeds` to list more
  # than one and the encoders trained here), or 'auto': 'seeds' when it can
  # (more than one seed, no encoder_workdir) and the stack fits in memory, else
  # 'data'. The maths and the files are the same either way (float rounding
  # aside, docs/scaling.md); it may change between runs of one workdir.
  config.train.parallel = 'auto'
  # Also write the metrics.jsonl scalars (losses per model, their total,
  # steps/s, validation losses) as TensorBoard event files in
  # <workdir>/tensorboard/ (`tensorboard --logdir <workdir>`). Needs the
  # optional writer library: pip install -e '.[tensorboard]'.
  config.train.tensorboard = False

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
  # Walk aggregation shown first (plots, '(default)' in report.md, a walk-level
  # headline): 'vote' (each window votes for its own window-level decision,
  # the RN's top class or the person of its nearest gallery window), 'mean'
  # (mean of the windows' RN scores / CAGEs), or 'auto': per protocol, 'mean'
  # for A and 'vote' for B, the better of the two for CAGEs on the demo, GIST
  # and a 164-person synthetic set (docs/results.md, "Which aggregation").
  # Both are always reported.
  config.eval.walk_aggregation = 'auto'
  # Test walks with fewer windows than this are left out of walk-level scores
  # and counted (one window is window-level evidence, not a walk).
  config.eval.min_walk_windows = 2
  return config
