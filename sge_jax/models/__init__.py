"""Flax Linen models: the per-axis gait-encoding model (TF LSTM encoder,
attention decoder, contrastive projector) and the recognition network."""

from sge_jax.models.decoder import AttentionDecoder
from sge_jax.models.gait_model import GaitEncodingModel, shift_right
from sge_jax.models.lstm import StackedLSTMEncoder, lstm_cell, lstm_update, run_lstm_layer
from sge_jax.models.projector import ContrastiveProjector
from sge_jax.models.recognition import RecognitionNetwork
