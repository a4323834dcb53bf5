"""CPU int8 inference (`quantize_dynamic_int8`): every branch runs int8 products, stays close to float32, saves and
loads to the same int8 model, and refuses training."""

import pytest
import torch
from huggingface_hub.errors import StrictDataclassFieldValidationError
from torch.profiler import ProfilerActivity, profile
from transformers import AutoModelForSeq2SeqLM

from hf_rnn_seq2seq import RNNSeq2SeqForConditionalGeneration

from .conftest import SMALL_GRID, make_batch, tiny_model

BRANCHES = [
    *SMALL_GRID,
    pytest.param(dict(decoder_layers=2, encoder_layers=2), id="lstm-feed-D2"),
    pytest.param(dict(cell_type="gru", attention_type="additive", decoder_layers=2), id="gru-additive-feed-D2"),
    pytest.param(
        dict(use_copy=True, copy_extended_vocab=True, max_source_oovs=3, use_coverage=True, attention_type="additive"),
        id="copyext-coverage",
    ),
]


def sized(**overrides):
    """A tiny model with layers wide enough for int8 rounding to average out (and a peaky output layer)."""
    model = tiny_model(embedding_size=32, hidden_size=64, **overrides)
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    return model


def log_probs(model, batch):
    with torch.no_grad():
        return torch.log_softmax(model(**batch).logits, dim=-1)


@pytest.mark.parametrize("overrides", BRANCHES)
def test_int8_runs_int8_products_and_stays_close_to_float32(overrides):
    model, batch = sized(**overrides), make_batch()
    expected = log_probs(model, batch)
    model.quantize_dynamic_int8()
    assert model.config.cpu_quantization == "dynamic_int8"
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        got = log_probs(model, batch)
    events = prof.key_averages(group_by_input_shape=True)
    assert any(event.key == "quantized::linear_dynamic" for event in events)
    # Float32 products left: only 1-wide ones (the additive score v, the copy gate), where int8 gains nothing.
    left = [event.input_shapes for event in events if event.key == "aten::linear"]
    assert all(shapes[1][0] == 1 for shapes in left), left
    probabilities = expected.exp()
    # The distribution moves a little (int8 weights and activations), not more.
    assert (probabilities - got.exp()).abs().max() < 0.05
    top2 = probabilities.topk(2, dim=-1).values
    clear = top2[..., 0] - top2[..., 1] > 0.1  # where float32 has a clear first choice, int8 makes the same one
    assert torch.equal(expected.argmax(-1)[clear], got.argmax(-1)[clear])
    out = model.generate(batch["input_ids"], attention_mask=batch["attention_mask"], num_beams=3, max_new_tokens=6)
    assert out.shape[0] == batch["input_ids"].shape[0]


def test_save_and_load_give_the_same_int8_model(tmp_path):
    model, batch = sized(attention_type="additive"), make_batch()
    float_state = {k: v.clone() for k, v in model.state_dict().items()}
    model.quantize_dynamic_int8()
    expected = log_probs(model, batch)
    model.save_pretrained(tmp_path)
    for k, v in model.state_dict().items():  # the checkpoint holds the float32 weights, unchanged
        assert v.dtype == torch.float32 and torch.equal(v, float_state[k])
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert loaded.config.cpu_quantization == "dynamic_int8" and loaded._int8_quantized
    assert torch.equal(log_probs(loaded, batch), expected)
    # A float32 checkpoint loads quantised on request too.
    loaded.dequantize().save_pretrained(tmp_path / "float")
    again = RNNSeq2SeqForConditionalGeneration.from_pretrained(tmp_path / "float", cpu_quantization="dynamic_int8")
    assert torch.equal(log_probs(again, batch), expected)


def test_dequantize_restores_float32_exactly():
    model, batch = sized(), make_batch()
    expected = log_probs(model, batch)
    model.quantize_dynamic_int8().dequantize()
    assert model.config.cpu_quantization is None
    assert torch.equal(log_probs(model, batch), expected)
    model.quantize_dynamic_int8().quantize_dynamic_int8()  # twice is once
    model.dequantize()
    assert torch.equal(log_probs(model, batch), expected)


def test_an_int8_model_refuses_training_and_a_flag_without_quantization():
    model, batch = sized(), make_batch()
    model.quantize_dynamic_int8().train()
    with pytest.raises(ValueError, match=r"inference only.*dequantize"):
        model(**batch)
    fresh = tiny_model(cpu_quantization="dynamic_int8")  # a config that asks for int8, weights never quantised
    with pytest.raises(ValueError, match="not quantised"):
        fresh(**batch)
    with pytest.raises(StrictDataclassFieldValidationError, match="cpu_quantization"):
        tiny_model(cpu_quantization="int4")
    with pytest.raises(ValueError, match="float32"):
        tiny_model().to(torch.bfloat16).quantize_dynamic_int8()
