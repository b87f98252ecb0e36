"""Flax Linen models of the gait-encoding method."""

from sge_jax.models.decoder import AttentionDecoder
from sge_jax.models.gait_model import DECODER_INPUT_MODES, GaitEncodingModel, shift_right
from sge_jax.models.lstm import StackedLSTMEncoder, lstm_cell, lstm_update, run_lstm_layer
from sge_jax.models.projector import ContrastiveProjector
