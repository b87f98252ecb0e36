"""Default configuration: every field, with what it means.

Dataset configs (``kgbd.py``, ``biwi.py``, ...) start from this and override only what
differs. Any field can be overridden on the command line, e.g.
``python launch.py --config=configs/kgbd.py --config.train.epochs=5``.

The field names under ``seed``, ``data``, ``model``, ``train`` and ``rn`` are a public
contract: scripts depend on them.
"""

from typing import Optional

import ml_collections


def get_config(arg: Optional[str] = None) -> ml_collections.ConfigDict:
  """The defaults; ``arg='smoke'`` (``--config=configs/default.py:smoke``) shrinks them."""
  return with_variant(base_config(), arg)


def with_variant(config: ml_collections.ConfigDict,
                 arg: Optional[str]) -> ml_collections.ConfigDict:
  """Applies a config argument: '' (as is) or 'smoke' (minutes -> seconds)."""
  if not arg:
    return config
  if arg != 'smoke':
    raise ValueError(f'unknown config argument {arg!r}; the only one is :smoke')
  # A quick end-to-end check of a set-up: tiny model, few epochs, few sequences.
  config.model.hidden = 32
  config.data.max_sequences = 256
  config.data.synthetic.num_people = 6
  config.data.synthetic.recordings_per_person = 3
  config.data.synthetic.test_recordings_per_person = 1
  config.data.synthetic.frames_per_recording = 80
  config.train.epochs = 2
  config.train.batch_size = 32
  config.train.log_every_steps = 4
  config.train.checkpoint_every_steps = 8
  config.rn.epochs = 5
  config.rn.hidden = 32
  return config


def base_config() -> ml_collections.ConfigDict:
  """Every field with its default (the paper's values where it has one)."""
  config = ml_collections.ConfigDict()

  # Root seed: model init, sorting permutations, RN init/shuffling and validation
  # split all derive from it (typed PRNG keys, fold_in per use).
  config.seed = 0
  # Multi-seed run: comma-separated seeds ('0,1,2'). Empty = just `seed`. Each seed
  # runs the whole job in <workdir>/seed_<s>/; the workdir gets mean ± std.
  config.seeds = ''
  # Stages to run, comma-separated, in this order: train (self-supervised encoders),
  # encode (CAGEs -> encodings.npz), evaluate (RN, metrics, baselines, reports).
  config.stages = 'train,encode,evaluate'
  # Reuse the trained encoders of another workdir instead of training here (the
  # authors' "transfer" setting: encode this dataset with that dataset's model).
  config.encoder_workdir = ''

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
  # Subtract each sequence's mean position (per axis, over its f frames and J
  # joints) before training and encoding. Not in the authors' code, which feeds
  # raw camera coordinates: there, where in the room a window was recorded is
  # part of its encoding, which confounds identity when people walk across the
  # view (on the demo set: Rank-1 34% raw vs 89% centred after 30 epochs).
  config.data.center_sequences = False
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
  # 'none' (run all epochs) or 'paper' (the authors' plateau rule, SPEC §5).
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
  # SPEC's sequence-level CAGE) or 'mean' (mean over the f frames, [D]).
  config.eval.retrieval_features = 'concat'
  # Length of the retrieval CMC curves stored and plotted (B, CME).
  config.eval.cmc_max_rank = 50
  # Write PNG plots (CMC, ROC, RN accuracy) when matplotlib is installed.
  config.eval.plots = True
  return config
