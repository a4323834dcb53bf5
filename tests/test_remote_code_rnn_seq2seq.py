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

from .conftest import make_batch, make_copy_batch, tiny_model

REMOTE_LOAD = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class NoPackage(importlib.abc.MetaPathFinder):  # as if hf_rnn_seq2seq were not installed
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "hf_rnn_seq2seq":
                raise ModuleNotFoundError(f"No module named {name!r}")

    sys.meta_path.insert(0, NoPackage())
    try:
        import hf_rnn_seq2seq  # noqa: F401
        raise SystemExit("hf_rnn_seq2seq is importable: the test would prove nothing")
    except ModuleNotFoundError:
        pass

    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

    folder, inputs = sys.argv[1], json.loads(sys.argv[2])
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    base = AutoModel.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True).eval()
    inputs = {key: torch.tensor(value) for key, value in inputs.items()}
    sequences = model.generate(**inputs, num_beams=3, max_new_tokens=6)
    print(json.dumps({
        "classes": [type(config).__module__, type(base).__module__, type(model).__module__],
        "names": [type(config).__name__, type(base).__name__, type(model).__name__],
        "sequences": sequences.tolist(),
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
    model = tiny_model(**overrides)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    assert {"configuration_rnn_seq2seq.py", "modeling_rnn_seq2seq.py"} <= set(os.listdir(folder))
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
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_LOAD, str(folder), payload],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(not module.startswith("hf_rnn_seq2seq") for module in loaded["classes"]), loaded["classes"]
    assert loaded["names"] == ["RNNSeq2SeqConfig", "RNNSeq2SeqModel", "RNNSeq2SeqForConditionalGeneration"]
    assert loaded["sequences"] == expected


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
    model.push_to_hub("someone/rnn-demo", model_card_kwargs={"metrics": {"test_bleu": 12.5}, "datasets": ["toy"]})
    assert {"config.json", "model.safetensors", "generation_config.json", "configuration_rnn_seq2seq.py",
            "modeling_rnn_seq2seq.py", "README.md"} <= set(uploads)  # fmt: skip
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in uploads), "safetensors only, no pickles"
    assert set(json.loads(uploads["config.json"])["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForSeq2SeqLM"}
    card = ModelCard(uploads["README.md"].decode())
    assert "someone/rnn-demo" in card.text and "| test | bleu | 12.5 |" in card.text and card.data.datasets == ["toy"]
