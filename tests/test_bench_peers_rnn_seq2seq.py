"""scripts/bench_peers.py (our side of the OpenNMT-py / JoeyNMT speed comparison) on a tiny generated corpus: `train`
and `translate` write result.json in the peer harness' schema, with positive throughputs, one prediction per test
line, and source words outside the vocabulary copied through as words; the vocabulary rule and the table, in-process.
No peer harness or peer installation is needed."""

import json
import os
import random
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_peers.py"

TOP_KEYS = {"name", "system", "variant", "data", "task", "threads", "layers", "hidden", "emb", "batch", "steps",
            "loadavg_before", "loadavg_after"}  # fmt: skip
TRAIN_KEYS = {"tgt_tok_per_s", "tgt_tok_per_s_median_step", "tgt_tok_per_cpu_s", "step_ms_median", "step_ms_mean",
              "step_cpu_ms_median", "cpu_util_in_window", "startup_to_first_step_s", "steps_done",
              "warmup_steps_excluded", "window_steps", "tgt_tokens_per_step", "params", "src_vocab", "tgt_vocab",
              "process", "torch", "torch_threads", "checkpoint"}  # fmt: skip
TRANSLATE_KEYS = {"beam", "batch", "max_length", "n_sents", "decode_wall_s", "decode_cpu_s", "sents_per_s",
                  "sents_per_cpu_s", "hyp_tok_per_s", "bleu", "chrf", "exact_match", "hyp_tokens", "ref_tokens",
                  "bleu_signature", "model_load_wall_s", "repeats", "decode_wall_s_runs", "process", "tag"}  # fmt: skip
OOV_LINE = "zqxv zqxv zqxv"  # a word seen nowhere in training: only copying can produce it


def write_corpus(folder: Path, seed: int = 0) -> None:
    """copy/reverse pairs over 20 frequent words, with a rare word (seen once, so outside the vocabulary) now and
    then; the 4th test source is OOV_LINE."""
    rng = random.Random(seed)
    words = [f"w{i:02d}" for i in range(20)]

    def pair():
        tokens = [
            "".join(rng.choice("abcdefghijklmnop") for _ in range(6)) if rng.random() < 0.1 else rng.choice(words)
            for _ in range(rng.randint(3, 8))
        ]
        command = rng.choice(["<copy>", "<rev>"])
        return f"{command} {' '.join(tokens)}", " ".join(tokens if command == "<copy>" else tokens[::-1])

    folder.mkdir()
    for split, size in (("train", 200), ("valid", 10), ("test", 12)):
        pairs = [pair() for _ in range(size)]
        if split == "test":
            pairs[3] = (OOV_LINE, OOV_LINE)
        (folder / f"{split}.src").write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
        (folder / f"{split}.tgt").write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")


def bench(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    result = subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_train_and_translate_write_the_peer_schema_and_copy_oov_words(tmp_path):
    """A copy + coverage model trained 3 steps, then made to copy only (its copy gate p_gen forced to ~0: the learnt
    behaviour of a trained copy model, without training it), decodes 10 test lines at a fixed length of 5: the OOV
    word comes out as itself, from the extended vocabulary, never as <unk>."""
    data, run = tmp_path / "toy", tmp_path / "run"
    write_corpus(data)
    printed = bench("train", "--variant", "mlp_copy_cov", "--data", str(data), "--steps", "3", "--threads", "1",
                    "--out", str(run), "--batch", "16")  # fmt: skip
    assert printed["run"] == str(run) and printed["train"]["tgt_tok_per_s"] > 0

    weights_file = run / "model" / "model.safetensors"
    weights = load_file(weights_file)
    gate = [key for key in weights if key.endswith("copy_gate.bias")]
    assert len(gate) == 1, f"no single copy gate bias among {sorted(weights)}"
    weights[gate[0]] = torch.full_like(weights[gate[0]], -30.0)
    weights[gate[0].replace(".bias", ".weight")].zero_()
    save_file(weights, weights_file, metadata={"format": "pt"})

    printed = bench("translate", "--run", str(run), "--threads", "1", "--n-test", "10", "--fixed-length", "5",
                    "--tag", "fixed5")  # fmt: skip
    assert printed["fixed5"]["sents_per_s"] > 0

    result = json.loads((run / "result.json").read_text())
    assert TOP_KEYS <= set(result) and result["system"] == "hf" and result["task"] == "toy"
    train, decode = result["train"], result["fixed5"]
    assert TRAIN_KEYS <= set(train) and TRANSLATE_KEYS <= set(decode)
    assert train["steps_done"] == 3 and train["window_steps"] == 2 and train["torch_threads"] == 1
    for key in ("tgt_tok_per_s", "tgt_tok_per_s_median_step", "tgt_tok_per_cpu_s", "tgt_tokens_per_step", "params"):
        assert train[key] > 0, key
    assert train["src_vocab"] == train["tgt_vocab"] == 4 + 20 + 2  # specials, words, <copy> <rev>: rare words out
    assert train["process"]["peak_rss_mb"] > 0 and Path(train["checkpoint"]).is_dir()
    assert decode["n_sents"] == 10 and decode["sents_per_s"] > 0 and decode["hyp_tok_per_s"] > 0
    assert decode["max_length"] == 5 and decode["tag"] == "fixed5"

    predictions = (run / "fixed5" / "pred.txt").read_text(encoding="utf-8").splitlines()
    assert len(predictions) == 10
    assert all(len(p.split()) == 5 for p in predictions)  # fixed length: EOS neither stops nor appears
    assert predictions[3] == " ".join(["zqxv"] * 5)
    assert not any("<unk>" in p for p in predictions)
    assert decode["hyp_tokens"] == 50


def test_vocabulary_rule_and_table():
    """Vocabulary: tokens seen >= min_freq times on either side, after <pad> <s> </s> <unk>. Table: ours next to the
    peers' runs of the same model, with ratios ours / peer."""
    script = runpy.run_path(str(SCRIPT), run_name="not_main")
    vocab, info = script["build_vocab"](["a a b c", "c x"], ["a d d", "e"], min_freq=2)
    assert list(vocab)[:4] == ["<pad>", "<s>", "</s>", "<unk>"] and set(list(vocab)[4:]) == {"a", "c", "d"}
    assert info == {"src_side_types": 2, "tgt_side_types": 1, "shared": 7}

    def result(system, variant, tok, sents):
        train = {"tgt_tok_per_s": tok, "process": {"peak_rss_mb": 500.0}, "torch": "2.x"}
        return {"name": f"{system}_{variant}", "system": system, "variant": variant, "task": "toy", "layers": 1,
                "threads": 1, "steps": 30, "train": train, "translate": {"sents_per_s": sents, "bleu": 1.0}}  # fmt: skip

    md = script["table"](
        [
            result("onmt", "lstm_mlp", 2000.0, 100.0),
            result("joey", "lstm_bahdanau", 1000.0, 50.0),
            result("hf", "mlp", 3000.0, 50.0),
            result("onmt", "lstm_general", 4000.0, 10.0),
        ]
    )
    rows = [line for line in md.splitlines() if line.startswith("| toy")]
    assert len(rows) == 2
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[:8] == ["toy", "mlp", "1", "3000", "2000", "1.50x", "1000", "3.00x"]
    assert cells[10:15] == ["50", "100", "0.50x", "50", "1.00x"]
    assert "| toy | general | 1 | - | 4000 | - |" in rows[1]


def test_our_side_runs_in_the_given_virtual_environment(tmp_path):
    """`suite --hf-venv DIR` runs our train/translate processes with DIR's interpreter (as the peers run in their own
    venvs); without it, this interpreter; a folder without bin/python is refused with the command that makes one."""
    script = runpy.run_path(str(SCRIPT), run_name="not_main")
    hf_python = script["_hf_python"]
    assert hf_python(None) == sys.executable
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").write_text("")
    assert hf_python(str(tmp_path)) == str(tmp_path / "bin" / "python")
    with pytest.raises(SystemExit, match=r"no bin/python there.*python -m venv"):
        hf_python(str(tmp_path / "missing"))
