"""scripts/benchmark_scaling.py: the quick run writes the JSON it promises; its analytic FLOP count agrees with
torch's FlopCounterMode; its line fit finds a line."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_rnn_seq2seq import RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "benchmark_scaling.py"


def load_script():
    spec = importlib.util.spec_from_file_location("benchmark_scaling", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports no torch at module level: cheap
    return module


@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
def test_analytic_flops_match_flop_counter(cell_type):
    """FlopCounterMode sees every matrix product of a training step except, for an LSTM on CPU, the encoder's
    (aten.mkldnn_rnn_layer has no FLOP formula): the count agrees with the analytic one, or with it less the encoder."""
    script = load_script()
    config = RNNSeq2SeqConfig(
        vocab_size=300, embedding_size=16, hidden_size=32, cell_type=cell_type, attention_type="general",
        input_feeding=True, bidirectional_encoder=True, dropout=0.3, bridge="last",
    )  # fmt: skip
    torch.manual_seed(0)
    model = RNNSeq2SeqForConditionalGeneration(config).train()
    batch, source, target = 4, 12, 9
    ids, labels = torch.randint(4, 300, (batch, source)), torch.randint(4, 300, (batch, target))
    counted = script.count_flops(model, dict(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels))[
        "total"
    ]
    analytic = script.training_step_flops(config, batch, source, target)
    encoder = 3 * sum(value for name, value in analytic.items() if name.startswith("encoder"))
    assert min(abs(counted / analytic["total"] - 1), abs(counted / (analytic["total"] - encoder) - 1)) < 0.02


def test_line_fit_reports_slope_intercept_and_deviations():
    fit = load_script().fit_per_step([10, 50, 100, 200], [5.0, 3.5, 4.0, 5.0], min_source=50)
    assert fit["fitted_source_lengths"] == [50, 100, 200]
    assert fit["slope_ms_per_source_token"] == pytest.approx(0.01)
    assert fit["intercept_ms"] == pytest.approx(3.0)
    assert fit["largest_relative_deviation_fitted"] < 0.05 and fit["linear_within_10_percent"]
    assert fit["deviation_by_source_length"][10] == pytest.approx((5.0 - 3.1) / 5.0)  # fixed costs at small S


@pytest.mark.slow
def test_quick_run_writes_the_source_and_flops_figures(tmp_path):
    report = tmp_path / "scaling.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    args = [sys.executable, str(SCRIPT), "--quick", "--sweeps", "source", "flops", "--json", str(report)]
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    figures = json.loads(report.read_text())
    assert {"config", "threads", "source", "flops"} <= figures.keys() and "batch" not in figures
    source = figures["source"]
    assert [p["source_length"] for p in source["points"]] == [5, 10, 20, 50, 100]
    for point in source["points"]:
        assert point["train_step_ms"] > 0 and point["train_gflop_per_s"] > 0 and point["encoder_ms"] > 0
        for name in ("greedy", "beam5"):
            assert point[name]["total_ms"] > 0 and point[name]["new_tokens"] == 5
    assert {"slope_ms_per_source_token", "intercept_ms", "largest_relative_deviation_fitted"} <= source["linear_fit"][
        "beam5"
    ].keys()
    flops = figures["flops"]
    assert flops["matmul_peak_gflop_per_s"] > 0 and flops["achieved_gflop_per_s"] > 0
    assert 0 < flops["flop_counter_total_flops"] <= flops["analytic_total_flops"] * 1.02
    assert "Source length S" in result.stdout and "FlopCounterMode" in result.stdout
