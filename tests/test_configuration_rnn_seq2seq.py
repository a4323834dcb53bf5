import pytest
from transformers import AutoConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

from hf_rnn_seq2seq import RNNSeq2SeqConfig

from .conftest import tiny_config


def test_model_type_is_not_shipped_by_transformers():
    # If transformers ever ships "rnn_seq2seq", our registration would clash: this test must then fail first.
    assert "rnn_seq2seq" not in CONFIG_MAPPING_NAMES
    assert AutoConfig.for_model("rnn_seq2seq").__class__ is RNNSeq2SeqConfig


def test_defaults_and_derived_values():
    config = RNNSeq2SeqConfig()
    assert config.is_encoder_decoder
    assert config.num_hidden_layers == config.decoder_layers
    assert config.encoder_hidden_size_per_direction == config.hidden_size // 2
    assert config.encoder_output_size == config.hidden_size
    uni = RNNSeq2SeqConfig(bidirectional_encoder=False)
    assert uni.encoder_output_size == uni.hidden_size
    explicit = RNNSeq2SeqConfig(encoder_hidden_size=100)
    assert explicit.encoder_output_size == 200


def test_save_load_round_trip(tmp_path):
    config = tiny_config(attention_type="additive", cell_type="gru", label_smoothing=0.1)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, RNNSeq2SeqConfig)
    assert loaded.to_diff_dict() == config.to_diff_dict()


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(cell_type="rnn"), "cell_type"),
        (dict(attention_type="bahdanau"), "attention_type"),
        (dict(bridge="mean"), "bridge"),
        (dict(hidden_size="big"), "hidden_size"),
        (dict(hidden_size=0), "hidden_size"),
        (dict(vocab_size=-5), "vocab_size"),
        (dict(encoder_layers=0), "encoder_layers"),
        (dict(dropout=1.5), "dropout"),
        (dict(label_smoothing=-0.1), "label_smoothing"),
        (dict(initializer_range=0.0), "initializer_range"),
        (dict(hidden_size=13), "hidden_size"),  # odd size cannot be split over two directions
        (dict(attention_type="dot", encoder_hidden_size=5), "dot"),
        (dict(bridge="last", bidirectional_encoder=False, encoder_hidden_size=5), "bridge='last'"),
        (dict(attention_type="none"), "input_feeding"),
        (dict(attention_type="none", input_feeding=False, bridge="zeros"), "bridge='zeros'"),
        (dict(pad_token_id=23), "pad_token_id"),
        (dict(eos_token_id=-1), "eos_token_id"),
        (dict(decoder_start_token_id=None), "decoder_start_token_id"),
        (dict(pad_token_id=None), "pad_token_id"),
    ],
)
def test_invalid_values_are_rejected_with_the_field_named(kwargs, field):
    with pytest.raises(Exception) as excinfo:
        tiny_config(**kwargs)
    assert field in str(excinfo.value)


def test_model_revalidates_a_config_edited_after_construction():
    from hf_rnn_seq2seq import RNNSeq2SeqForConditionalGeneration

    config = tiny_config()
    config.attention_type = "dot"
    config.encoder_hidden_size = 5
    with pytest.raises(Exception, match="dot"):
        RNNSeq2SeqForConditionalGeneration(config)
