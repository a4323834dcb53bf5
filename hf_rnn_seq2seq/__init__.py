"""hf-rnn-seq2seq: RNN (LSTM/GRU) encoder-decoders with attention as first-class transformers models.

Importing the package registers `model_type="rnn_seq2seq"` with `AutoConfig`, `AutoModel` and
`AutoModelForSeq2SeqLM`, so the Auto classes build and load these models like any other, and the text-to-text
pipeline task "rnn-seq2seq-generation".
"""

from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

from .configuration_rnn_seq2seq import RNNSeq2SeqConfig
from .data_rnn_seq2seq import (
    DataCollatorForCopySeq2Seq,
    batch_decode_keeping_unknown,
    batch_decode_with_source_oovs,
    decode_with_source_oovs,
    prepare_copy_inputs,
)
from .modeling_rnn_seq2seq import (
    CoveragePenaltyLogitsProcessor,
    RNNSeq2SeqCache,
    RNNSeq2SeqEncoderOutput,
    RNNSeq2SeqForConditionalGeneration,
    RNNSeq2SeqLMOutput,
    RNNSeq2SeqModel,
    RNNSeq2SeqModelOutput,
    RNNSeq2SeqPreTrainedModel,
    shift_tokens_right,
)
from .pipeline_rnn_seq2seq import RNNSeq2SeqPipeline, register_pipeline

__version__ = "0.1.0"

# One registration block, without exist_ok: if transformers ever ships its own "rnn_seq2seq", importing fails loudly
# instead of silently shadowing one of the two.
AutoConfig.register(RNNSeq2SeqConfig.model_type, RNNSeq2SeqConfig)
AutoModel.register(RNNSeq2SeqConfig, RNNSeq2SeqModel)
AutoModelForSeq2SeqLM.register(RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration)
register_pipeline()  # pipeline("rnn-seq2seq-generation", model=...): transformers 5 has no translation pipeline
# Saved folders carry their code (configuration_/modeling_rnn_seq2seq.py) and an `auto_map`, so that they load with
# `trust_remote_code=True` where this package is not installed.
RNNSeq2SeqConfig.register_for_auto_class()
RNNSeq2SeqModel.register_for_auto_class("AutoModel")
RNNSeq2SeqForConditionalGeneration.register_for_auto_class("AutoModelForSeq2SeqLM")


def __getattr__(name: str):
    # The trainer imports transformers.Trainer and datasets (~100 MB, ~1 s): only for those who train with it, so
    # that inference (`from_pretrained` + `generate`) starts lighter.
    if name == "RNNSeq2SeqTrainer":
        from .trainer_rnn_seq2seq import RNNSeq2SeqTrainer

        return RNNSeq2SeqTrainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CoveragePenaltyLogitsProcessor",
    "DataCollatorForCopySeq2Seq",
    "RNNSeq2SeqCache",
    "RNNSeq2SeqConfig",
    "RNNSeq2SeqEncoderOutput",
    "RNNSeq2SeqForConditionalGeneration",
    "RNNSeq2SeqLMOutput",
    "RNNSeq2SeqModel",
    "RNNSeq2SeqModelOutput",
    "RNNSeq2SeqPipeline",
    "RNNSeq2SeqPreTrainedModel",
    "RNNSeq2SeqTrainer",
    "__version__",
    "batch_decode_keeping_unknown",
    "batch_decode_with_source_oovs",
    "decode_with_source_oovs",
    "prepare_copy_inputs",
    "register_pipeline",
    "shift_tokens_right",
]
