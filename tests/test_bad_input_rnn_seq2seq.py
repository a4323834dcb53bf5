"""Bad input gets an error naming the argument and what was expected, never a crash deep inside torch."""

import json

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM

from hf_rnn_seq2seq import RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration

from .conftest import VOCAB, make_batch, tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def _call(model, **changes):
    batch = make_batch()
    batch.update(changes)
    return model(**{k: v for k, v in batch.items() if v is not None})


@pytest.mark.parametrize(
    "changes, error, message",
    [
        (dict(input_ids=torch.full((3, 7), VOCAB)), ValueError, r"`input_ids` holds ids outside \[0, 23\)"),
        (dict(input_ids=torch.full((3, 7), -1)), ValueError, "`input_ids` holds ids outside"),
        (dict(input_ids=torch.rand(3, 7)), TypeError, "`input_ids` must hold integer token ids"),
        (
            dict(input_ids=torch.ones(3, 7, 2, dtype=torch.long)),
            ValueError,
            r"`input_ids` must have shape \(batch_size",
        ),
        (dict(input_ids=torch.ones(3, 0, dtype=torch.long), attention_mask=None), ValueError, "`input_ids` is empty"),
        (dict(attention_mask=torch.ones(3, 6)), ValueError, r"`attention_mask` must have the source's shape"),
        (dict(attention_mask=torch.tensor([[1] * 7, [0] * 7, [1] * 7])), ValueError, r"source row\(s\) \[1\]"),
        (dict(labels=torch.full((3, 5), VOCAB + 3)), ValueError, "`labels` holds ids outside"),
        (dict(labels=torch.full((3, 5), -7)), ValueError, r"`labels` holds ids outside \[0, 23\) or -100"),
        (dict(decoder_input_ids=torch.ones(3, 4, dtype=torch.long)), ValueError, "must have the same shape"),
        (dict(decoder_input_ids=torch.full((3, 5), -100)), ValueError, "`decoder_input_ids` holds ids outside"),
        (dict(labels=None), ValueError, "Pass `decoder_input_ids`"),
        (dict(input_ids=None, attention_mask=None), ValueError, "Pass `input_ids`"),
    ],
    ids=[
        "id-too-large",
        "negative-id",
        "float-ids",
        "3d-ids",
        "empty-source",
        "mask-shape",
        "all-padding-row",
        "label-too-large",
        "label-negative",
        "labels-vs-decoder-ids",
        "minus-100-as-decoder-input",
        "no-decoder-input",
        "no-source",
    ],
)
def test_forward_rejects(model, changes, error, message):
    with pytest.raises(error, match=message):
        _call(model, **changes)


def test_decoder_batch_and_mask_mismatch(model):
    batch = make_batch()
    with pytest.raises(ValueError, match="batch size 2 but the source has 3"):
        model(input_ids=batch["input_ids"], decoder_input_ids=batch["labels"][:2])
    with pytest.raises(ValueError, match="`decoder_attention_mask` must have shape"):
        model(input_ids=batch["input_ids"], decoder_input_ids=batch["labels"], decoder_attention_mask=torch.ones(3, 2))


def test_generate_rejects_out_of_range_source(model):
    with pytest.raises(ValueError, match="`input_ids` holds ids outside"):
        model.generate(torch.full((1, 4), VOCAB + 1), max_length=5)


def test_corrupt_checkpoint_names_the_file(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(OSError, match="safetensors weights of checkpoint") as excinfo:
        AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert str(weights) in str(excinfo.value)


def test_config_of_another_model_type_is_an_error_naming_the_checkpoint(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(dict(config, model_type="bart")))
    with pytest.raises(ValueError, match="is for model type 'bart', not 'rnn_seq2seq'") as excinfo:
        RNNSeq2SeqForConditionalGeneration.from_pretrained(tmp_path)
    assert str(tmp_path) in str(excinfo.value)
    with pytest.raises(ValueError, match="model type 'bart'"):
        RNNSeq2SeqConfig.from_pretrained(tmp_path)


def test_weights_that_do_not_fit_the_config_name_the_file_and_the_sizes(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(dict(config, vocab_size=VOCAB + 5)))
    with pytest.raises(ValueError, match="do not fit its config") as excinfo:
        AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    message = str(excinfo.value)
    assert str(tmp_path / "model.safetensors") in message and f"vocab_size={VOCAB + 5}" in message
    assert f"model.shared.weight: checkpoint [{VOCAB}, " in message and "ignore_mismatched_sizes=True" in message


def test_cache_from_another_batch_or_source_is_rejected(model):
    batch = make_batch()
    cache = model(input_ids=batch["input_ids"], decoder_input_ids=batch["labels"][:, :1], use_cache=True).cache
    with pytest.raises(ValueError, match="batch size 3, the inputs have 2"):
        model(input_ids=batch["input_ids"][:2], decoder_input_ids=batch["labels"][:2, :1], cache=cache)
    with pytest.raises(ValueError, match="source of length 7"):
        model(input_ids=batch["input_ids"][:, :4], decoder_input_ids=batch["labels"][:, :1], cache=cache)
