"""Saved folders are self-contained: they load through the Auto classes with `trust_remote_code=True` in an
interpreter where this package cannot be imported, and generate exactly what the original model generates."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM

from hf_rnn_seq2seq.pipeline_rnn_seq2seq import RNNSeq2SeqPipeline

from .conftest import VOCAB, WITHOUT_PACKAGE, make_batch, make_copy_batch, tiny_model, word_level_tokenizer

REMOTE_LOAD = WITHOUT_PACKAGE + textwrap.dedent(
    """
    import json, sys

    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

    folder, inputs, text = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    base = AutoModel.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)  # trust: AutoTokenizer reads config.json
    generator = pipeline(model=folder, trust_remote_code=True, device="cpu")  # task and class from config.json
    inputs = {key: torch.tensor(value) for key, value in inputs.items()}
    sequences = model.generate(**inputs, num_beams=3, max_new_tokens=6)
    print(json.dumps({
        "classes": [type(x).__module__ for x in (config, base, model, generator)],
        "names": [type(x).__name__ for x in (config, base, model, generator)],
        "sequences": sequences.tolist(),
        "token_ids": tokenizer(text)["input_ids"],
        "pipeline": generator(text, num_beams=3, max_new_tokens=6),
    }))
    """
)


@pytest.mark.parametrize(
    "overrides",
    [dict(), dict(use_copy=True), dict(use_copy=True, copy_extended_vocab=True, max_source_oovs=3, use_coverage=True),
     dict(cell_type="gru", attention_type="additive", input_feeding=False)],
    ids=["attention", "copy", "copyext-coverage", "gru-additive"],
)  # fmt: skip
def test_saved_folder_loads_without_the_package_and_generates_identically(overrides, tmp_path):
    """Model, tokenizer and pipeline, as `RNNSeq2SeqPipeline.save_pretrained` writes them (model code, pipeline code,
    `custom_pipelines` in config.json, tokenizer files)."""
    model = tiny_model(**overrides)
    tokenizer = word_level_tokenizer([f"w{i}" for i in range(VOCAB - 4)])
    generator = RNNSeq2SeqPipeline(model=model, tokenizer=tokenizer, device="cpu")
    folder = tmp_path / "model"
    generator.save_pretrained(folder)
    assert {"configuration_rnn_seq2seq.py", "modeling_rnn_seq2seq.py", "pipeline_rnn_seq2seq.py",
            "tokenizer.json"} <= set(os.listdir(folder))  # fmt: skip
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert set(auto_map) == {"AutoConfig", "AutoModel", "AutoModelForSeq2SeqLM"}

    batch = make_copy_batch() if model.config.copy_extended_vocab else make_batch()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    expected = model.generate(**inputs, num_beams=3, max_new_tokens=6).tolist()

    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    payload = json.dumps({k: v.tolist() for k, v in inputs.items()})
    text = "w1 w2 w3"
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_LOAD, str(folder), payload, text],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(not module.startswith("hf_rnn_seq2seq") for module in loaded["classes"]), loaded["classes"]
    assert loaded["names"] == [
        "RNNSeq2SeqConfig", "RNNSeq2SeqModel", "RNNSeq2SeqForConditionalGeneration", "RNNSeq2SeqPipeline"]  # fmt: skip
    assert loaded["sequences"] == expected
    assert loaded["token_ids"] == tokenizer(text)["input_ids"]
    assert loaded["pipeline"] == generator(text, num_beams=3, max_new_tokens=6)


def test_in_process_loading_still_uses_the_installed_package(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    model = AutoModelForSeq2SeqLM.from_pretrained(tmp_path)  # no trust_remote_code: the registered class
    assert type(model).__module__ == "hf_rnn_seq2seq.modeling_rnn_seq2seq"
    batch = make_batch()
    torch.testing.assert_close(model(**batch).logits, tiny_model()(**batch).logits)


def test_push_to_hub_uploads_a_self_contained_folder_with_our_model_card(monkeypatch):
    """No Hub here: huggingface_hub is intercepted at its two network calls, and the uploaded file set is checked."""
    from types import SimpleNamespace

    from huggingface_hub import HfApi, ModelCard

    uploads = {}

    def create_repo(self, repo_id, **kwargs):
        return SimpleNamespace(repo_id=repo_id)

    def create_commit(self, repo_id, operations, **kwargs):
        for operation in operations:
            content = operation.path_or_fileobj
            uploads[operation.path_in_repo] = open(content, "rb").read() if isinstance(content, str) else content
        return SimpleNamespace(oid="0" * 40, commit_url="", pr_url=None)

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    model = tiny_model(use_copy=True, use_coverage=True)
    tokenizer = word_level_tokenizer([f"w{i}" for i in range(VOCAB - 4)])
    model.push_to_hub("someone/rnn-demo", tokenizer=tokenizer,
                      model_card_kwargs={"metrics": {"test_bleu": 12.5}, "datasets": ["toy"]})  # fmt: skip
    assert {"config.json", "model.safetensors", "generation_config.json", "configuration_rnn_seq2seq.py",
            "modeling_rnn_seq2seq.py", "README.md", "tokenizer.json", "tokenizer_config.json"} <= set(uploads)  # fmt: skip
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in uploads), "safetensors only, no pickles"
    assert set(json.loads(uploads["config.json"])["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForSeq2SeqLM"}
    card = ModelCard(uploads["README.md"].decode())
    assert "someone/rnn-demo" in card.text and "| test | bleu | 12.5 |" in card.text and card.data.datasets == ["toy"]
