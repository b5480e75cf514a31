"""Encoder, attention, decoder and the encoder-decoder. Never imports `seq2seq.data`."""

from seq2seq.model.attention import Attention
from seq2seq.model.decoder import Decoder, DecoderState
from seq2seq.model.encoder import Encoder, EncoderOutput
from seq2seq.model.seq2seq import Seq2Seq, StepOutput, build_model, count_parameters

__all__ = [
    "Attention",
    "Decoder",
    "DecoderState",
    "Encoder",
    "EncoderOutput",
    "Seq2Seq",
    "StepOutput",
    "build_model",
    "count_parameters",
]
