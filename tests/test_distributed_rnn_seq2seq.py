"""Several processes give the same model as one: first-step loss and gradient norm agree across layouts of the same
global batch; predictions under DDP come back once each, in dataset order; a resumed run continues exactly; half
precision stays finite. Processes run on CPU over gloo (`torchrun`; `accelerate launch --multi_gpu`)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_rnn_seq2seq.tasks_rnn_seq2seq import make_task

from .conftest import make_batch, make_copy_batch, tiny_model

WORKER = Path(__file__).resolve().parent / "distributed_worker_rnn_seq2seq.py"
SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def run_worker(tmp_path, name, args, launcher=(sys.executable,)):
    report = tmp_path / f"{name}.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [*launcher, str(WORKER), str(report), "--output_dir", str(tmp_path / name), *args],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return json.loads(report.read_text())


def test_same_first_step_and_predictions_in_every_layout_of_a_global_batch_of_32(tmp_path):
    """1 process × 32, 2 processes × 16 (DDP, find_unused_parameters=False), 1 process × 16 × accumulation 2:
    same loss and raw gradient norm (copy + coverage + label smoothing, loss divided by the global token count), and
    the same 13 beam-search predictions, each once and in order, from 1 and from 2 processes."""
    one = run_worker(tmp_path, "one", ["--batch", "32", "--predict", "13"])
    two = run_worker(tmp_path, "two", ["--batch", "16", "--predict", "13"], launcher=TORCHRUN)
    accumulated = run_worker(tmp_path, "accumulated", ["--batch", "16", "--accumulation", "2"])
    assert (one["world_size"], two["world_size"], accumulated["world_size"]) == (1, 2, 1)
    for other in (two, accumulated):
        assert other["steps"][0]["loss"] == pytest.approx(one["steps"][0]["loss"], rel=1e-5)
        assert other["steps"][0]["grad_norm"] == pytest.approx(one["steps"][0]["grad_norm"], rel=1e-5)
    assert len(one["predictions"]) == 13 and two["predictions"] == one["predictions"]


def test_a_resumed_run_continues_exactly(tmp_path):
    """Stopped after step 3 (its checkpoint), resumed: steps 4–8 (into the second epoch, dropout on) have the losses
    of the uninterrupted run — model, optimizer, scheduler, RNG and data order all restored."""
    common = ["--train_size", "64", "--batch", "16", "--max_steps", "8", "--save_steps", "3", "--dropout", "0.1"]
    full = run_worker(tmp_path, "full", common)
    run_worker(tmp_path, "part", [*common, "--stop_after", "3"])
    checkpoint = tmp_path / "part" / "checkpoint-3"
    assert checkpoint.is_dir()
    resumed = run_worker(tmp_path, "resumed", [*common, "--resume_from", str(checkpoint)])
    assert [s["step"] for s in full["steps"]] == list(range(1, 9))
    expected = {s["step"]: s["loss"] for s in full["steps"] if s["step"] > 3}
    got = {s["step"]: s["loss"] for s in resumed["steps"] if s["step"] > 3}
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-7)


def test_train_script_under_torchrun(tmp_path):
    output = tmp_path / "out"
    args = ["--output_dir", str(output), "--max_train_samples", "200", "--max_eval_samples", "10",
            "--max_predict_samples", "13", "--embedding_size", "16", "--hidden_size", "32", "--num_train_epochs", "1",
            "--per_device_eval_batch_size", "4", "--disable_tqdm", "true", "--generation_num_beams", "2"]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    result = subprocess.run([*TORCHRUN, str(SCRIPTS / "train.py"), *args], env=env, capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    lines = [json.loads(line) for line in (output / "predictions.jsonl").read_text().splitlines()]
    expected_sources = [pair["en"] for pair in make_task("numbers")["test"]["translation"][:13]]
    assert [line["source"] for line in lines] == expected_sources  # each test example once, in order
    assert "test_bleu" in json.loads((output / "all_results.json").read_text())


@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate's launcher is not on PATH")
def test_accelerate_launch_with_the_ddp_config_runs_two_processes(tmp_path):
    """scripts/accelerate/ddp.yaml (distributed_type MULTI_GPU) starts two processes, over gloo on a CPU machine, and
    gives the single-process first step. (`accelerate launch --cpu --num_processes 2` would start only one.)"""
    launcher = ["accelerate", "launch", "--config_file", str(SCRIPTS / "accelerate" / "ddp.yaml")]
    report = run_worker(tmp_path, "accelerate", ["--batch", "16"], launcher=launcher)
    one = run_worker(tmp_path, "one", ["--batch", "32"])
    assert report["world_size"] == 2
    assert report["steps"][0]["loss"] == pytest.approx(one["steps"][0]["loss"], rel=1e-5)


@pytest.mark.parametrize(
    "overrides",
    [dict(), dict(attention_type="additive"), dict(use_copy=True, use_coverage=True),
     dict(use_copy=True, copy_extended_vocab=True, max_source_oovs=3, use_coverage=True)],
    ids=["general", "additive", "copy-coverage", "copyext-coverage"],
)  # fmt: skip
def test_half_precision_stays_finite(overrides):
    batch = make_copy_batch() if overrides.get("copy_extended_vocab") else make_batch()
    model = tiny_model(**overrides).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what Trainer's --bf16 does on CPU
        output = model(**batch)
    output.loss.backward()
    assert torch.isfinite(output.loss) and torch.isfinite(output.logits).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    for dtype in (torch.bfloat16, torch.float16):  # weights in half precision: masking and the copy log stay finite
        half = tiny_model(**overrides).to(dtype).eval()
        output = half(**batch)
        assert next(half.parameters()).dtype == dtype  # (the copy mixture itself is computed in float32)
        assert torch.isfinite(output.logits).all() and torch.isfinite(output.loss)
        assert half.generate(**inputs, num_beams=3, max_new_tokens=5).shape[0] == batch["input_ids"].shape[0]
