"""The README's commands keep working: the demo (main job) and the benchmark, run small."""

import json
import runpy
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def run_script(name, args, monkeypatch):
    monkeypatch.setattr(sys, "argv", [name, *args])
    runpy.run_path(str(SCRIPTS / name), run_name="__main__")


def test_demo_trains_translates_saves_and_reloads(tmp_path, monkeypatch, capsys):
    run_script("demo.py", ["--output_dir", str(tmp_path), "--train_size", "256", "--epochs", "1"], monkeypatch)
    out = capsys.readouterr().out
    assert "Exact match on 200 held-out inputs, beam 5" in out
    assert "identical translations = True" in out
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "tokenizer.json").exists()


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["--input_feeding", "false", "--cell_type", "gru"],
        ["--variants", "plain", "copy+coverage", "copyext+coverage"],
    ],
    ids=["feed", "nofeed-gru", "copy-coverage-variants"],
)
def test_benchmark_prints_and_writes_its_figures(tmp_path, monkeypatch, capsys, extra):
    report = tmp_path / "bench.json"
    args = ["--vocab_size", "50", "--embedding_size", "8", "--hidden_size", "16", "--train_steps", "2"]
    args += ["--decode_sentences", "4", "--decode_batch_size", "2", "--decode_length", "3", "--json", str(report)]
    run_script("benchmark.py", args + extra, monkeypatch)
    figures = json.loads(report.read_text())
    for key in ("train_target_tokens_per_s", "greedy_sentences_per_s", "beam5_sentences_per_s", "peak_rss_mb"):
        assert figures[key] > 0, key
    assert "train_target_tokens_per_s" in capsys.readouterr().out
    if "--variants" in extra:
        variants = figures["variants"]
        assert list(variants) == ["plain", "copy+coverage", "copyext+coverage"]
        assert all(variants[name]["train_vs_plain"] > 0 for name in ("copy+coverage", "copyext+coverage"))
