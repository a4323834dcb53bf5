"""RNNSeq2SeqPipeline: text in, generated text out; n-best; copied OOV words; registration and saved folders."""

import json

import pytest
import torch
from transformers import pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from hf_rnn_seq2seq.pipeline_rnn_seq2seq import TASK, RNNSeq2SeqPipeline, register_pipeline

from .conftest import VOCAB, tiny_model, word_level_tokenizer

WORDS = [f"w{i}" for i in range(VOCAB - 4)]  # the tokenizer fills the model's vocabulary exactly
SOURCES = ["w1 w2 w3", "w4", "w5 w6 w7 w8 w9"]


@pytest.fixture(scope="module")
def tokenizer():
    return word_level_tokenizer(WORDS)


@pytest.fixture(scope="module")
def saved(tokenizer, tmp_path_factory):
    """A plain checkpoint folder: model + tokenizer, as `save_pretrained` or the Trainer write them."""
    model = tiny_model()
    folder = tmp_path_factory.mktemp("rnn")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, model


def reference_texts(model, tokenizer, text, **generate_kwargs):
    encoded = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        sequences = model.generate(**encoded, **generate_kwargs)
    return tokenizer.batch_decode(sequences, skip_special_tokens=True)


def test_register_pipeline_is_idempotent(monkeypatch):
    register_pipeline()
    assert PIPELINE_REGISTRY.supported_tasks[TASK]["impl"] is RNNSeq2SeqPipeline
    assert TASK in PIPELINE_REGISTRY.get_supported_tasks()

    def fail(*args, **kwargs):
        raise AssertionError("registered a second time")

    monkeypatch.setattr(PIPELINE_REGISTRY, "register_pipeline", fail)
    register_pipeline()
    register_pipeline()
    assert PIPELINE_REGISTRY.get_supported_tasks().count(TASK) == 1


def test_pipeline_from_saved_folder_string_and_list(saved, tokenizer):
    folder, model = saved
    register_pipeline()
    generator = pipeline(TASK, model=str(folder), device="cpu")
    assert isinstance(generator, RNNSeq2SeqPipeline)

    single = generator(SOURCES[0], max_new_tokens=6)
    assert single == [{"generated_text": reference_texts(model, tokenizer, SOURCES[0], max_new_tokens=6)[0]}]

    # a list gives one dict per input (flattened with one sequence each), equal to the inputs one by one, batched too
    expected = [generator(text, max_new_tokens=6)[0] for text in SOURCES]
    assert generator(SOURCES, max_new_tokens=6) == expected
    assert generator(SOURCES, max_new_tokens=6, batch_size=2) == expected

    with_ids = generator(SOURCES[0], max_new_tokens=6, return_tensors=True, return_text=True)[0]
    assert with_ids["generated_text"] == single[0]["generated_text"]
    assert tokenizer.decode(with_ids["generated_token_ids"], skip_special_tokens=True) == with_ids["generated_text"]
    assert "generated_text" not in generator(SOURCES[0], max_new_tokens=6, return_tensors=True)[0]


def test_n_best(saved, tokenizer):
    _, model = saved
    generator = RNNSeq2SeqPipeline(model=model, tokenizer=tokenizer, device="cpu", num_beams=4, max_new_tokens=6)
    best = generator(SOURCES[0], num_return_sequences=3)
    expected = reference_texts(model, tokenizer, SOURCES[0], num_beams=4, max_new_tokens=6, num_return_sequences=3)
    assert [item["generated_text"] for item in best] == expected

    lists = generator(SOURCES, num_return_sequences=2, batch_size=2)
    assert len(lists) == len(SOURCES) and all(len(items) == 2 for items in lists)
    assert [item["generated_text"] for item in lists[0]] == expected[:2]


def copying_model():
    """An extended-vocabulary copy model that always copies (p_gen ≈ 0) with uniform attention: each step writes the
    source word that fills most source positions."""
    model = tiny_model(use_copy=True, copy_extended_vocab=True, max_source_oovs=3)
    decoder = model.model.decoder
    with torch.no_grad():
        decoder.attention.key_proj.weight.zero_()  # `general` scores sᵀWh = 0: uniform attention
        decoder.copy_gate.weight.zero_()
        decoder.copy_gate.bias.fill_(-30.0)
    return model


def test_copy_model_writes_source_oov_words(tokenizer):
    model = copying_model()
    generator = RNNSeq2SeqPipeline(model=model, tokenizer=tokenizer, device="cpu", max_new_tokens=3)
    # "Zorb" is not in the vocabulary: the model can only write it through its extended id
    assert generator("Zorb w1 Zorb") == [{"generated_text": "Zorb Zorb Zorb"}]
    ids = generator("Zorb w1 Zorb", return_tensors=True)[0]["generated_token_ids"]
    assert (ids[1:] == model.config.vocab_size).all()
    assert "Zorb" not in tokenizer.decode(ids, skip_special_tokens=True)

    # rows of a batch keep their own OOV lists, and padding does not disturb the copy ids
    sources = ["Zorb w1 Zorb", "w2 Quux Quux Quux w3", "w4 w4"]
    expected = ["Zorb Zorb Zorb", "Quux Quux Quux", "w4 w4 w4"]
    assert [item["generated_text"] for item in generator(sources, batch_size=3)] == expected
    assert [item["generated_text"] for item in generator(sources, batch_size=1)] == expected
    beams = generator("Zorb w1 Zorb", num_beams=3, num_return_sequences=2)
    assert beams[0] == {"generated_text": "Zorb Zorb Zorb"} and len(beams) == 2


def test_plain_model_outputs_keep_the_unknown_token(saved, tokenizer):
    """As a copy model's outputs do: `<unk>` marks a word the model could not spell (not silently dropped)."""
    generator = RNNSeq2SeqPipeline(model=saved[1], tokenizer=tokenizer, device="cpu")
    unk, eos, bos = tokenizer.unk_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id
    word = tokenizer.convert_tokens_to_ids(WORDS[0])
    records = generator.postprocess({"output_ids": torch.tensor([[[bos, word, unk, eos]]])})
    assert records == [{"generated_text": f"{WORDS[0]} <unk>"}]


def test_saved_pipeline_folder(saved, tokenizer, tmp_path):
    _, model = saved
    generator = RNNSeq2SeqPipeline(model=model, tokenizer=tokenizer, device="cpu")
    expected = generator(SOURCES[0], max_new_tokens=5)

    with_code = tmp_path / "with_code"
    generator.save_pretrained(with_code)
    config = json.loads((with_code / "config.json").read_text())
    assert config["custom_pipelines"][TASK]["impl"] == "pipeline_rnn_seq2seq.RNNSeq2SeqPipeline"
    assert (with_code / "pipeline_rnn_seq2seq.py").is_file() and (with_code / "data_rnn_seq2seq.py").is_file()
    assert not hasattr(model.config, "custom_pipelines")  # the live model's config is left as it was
    remote = pipeline(model=str(with_code), trust_remote_code=True, device="cpu")  # the task comes from the config
    assert type(remote).__name__ == "RNNSeq2SeqPipeline" and remote.task == TASK
    assert remote(SOURCES[0], max_new_tokens=5) == expected

    plain = tmp_path / "plain"
    generator.save_pretrained(plain, custom_code=False)
    assert "custom_pipelines" not in json.loads((plain / "config.json").read_text())
    assert not (plain / "pipeline_rnn_seq2seq.py").exists()
    register_pipeline()
    assert pipeline(TASK, model=str(plain), device="cpu")(SOURCES[0], max_new_tokens=5) == expected


def test_bad_inputs(saved, tokenizer):
    _, model = saved
    generator = RNNSeq2SeqPipeline(model=model, tokenizer=tokenizer, device="cpu")
    with pytest.raises(TypeError, match="string"):
        generator([1, 2])
