"""The README's commands keep working: train (the main job), translate, evaluate and the benchmark, run small."""

import io
import json
import runpy
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
TINY = ["--embedding_size", "16", "--hidden_size", "32", "--num_train_epochs", "1", "--disable_tqdm", "true"]


def script(name):
    """The script's functions, loaded without running it (scripts/ on the path, as `python scripts/x.py` has)."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        return runpy.run_path(str(SCRIPTS / name), run_name="not_main")
    finally:
        sys.path.remove(str(SCRIPTS))


def run_script(name, args, monkeypatch):
    monkeypatch.setattr(sys, "argv", [name, *args])
    monkeypatch.syspath_prepend(str(SCRIPTS))
    runpy.run_path(str(SCRIPTS / name), run_name="__main__")


@pytest.fixture(scope="module")
def numbers_model(tmp_path_factory):
    """The built-in task, trained small: enough to exercise every output of train.py."""
    output = tmp_path_factory.mktemp("numbers")
    args = ["--output_dir", str(output), "--max_train_samples", "300", "--max_eval_samples", "20"]
    results = script("train.py")["main"]([*args, "--max_predict_samples", "20", *TINY])
    return output, results


def test_train_writes_model_tokenizer_metrics_predictions_and_curve(numbers_model):
    output, results = numbers_model
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "all_results.json",
                 "predictions.jsonl", "trainer_state.json", "training_curve.png", "README.md"):  # fmt: skip
        assert (output / name).exists(), name
    for key in ("eval_bleu", "eval_chrf", "eval_exact_match", "test_bleu", "test_exact_match", "wall_time_s"):
        assert key in results, key
    assert 0 <= results["test_exact_match"] <= 1 and 0 <= results["test_bleu"] <= 100
    lines = [json.loads(line) for line in (output / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 20 and set(lines[0]) == {"source", "prediction", "reference"}
    assert (output / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = ModelCard.load(output / "README.md")
    assert card.data.library_name == "transformers" and "rnn_seq2seq" in card.data.tags and "bleu" in card.data.metrics
    assert "python scripts/train.py" in card.text and f"{results['test_bleu']:.4g}" in card.text
    model, tokenizer = AutoModelForSeq2SeqLM.from_pretrained(output), AutoTokenizer.from_pretrained(output)
    assert (
        model.config.vocab_size == len(tokenizer)
        and tokenizer.decode(tokenizer("one two")["input_ids"]) == "one two </s>"
    )


def test_translate_arguments_stdin_json_nbest_and_attention_plot(numbers_model, tmp_path, monkeypatch, capsys):
    output, _ = numbers_model
    run_script(
        "translate.py",
        [str(output), "one two", "seven", "--num_beams", "3", "--num_return_sequences", "2"],
        monkeypatch,
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(len(line.split(" ||| ")) == 2 for line in lines)
    monkeypatch.setattr(sys, "stdin", io.StringIO("three four\n\nnine\n"))
    plot = tmp_path / "attention.png"
    run_script("translate.py", [str(output), "--json", "--plot_attention", str(plot)], monkeypatch)
    records = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["source"] for r in records] == ["three four", "nine"] and all(
        len(r["translations"]) == 1 for r in records
    )
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_model_writes_metrics_and_predictions(numbers_model, tmp_path, monkeypatch, capsys):
    output, _ = numbers_model
    data = tmp_path / "test.jsonl"
    rows = [{"translation": {"en": "one two", "zh": "一 二"}}, {"translation": {"en": "nine", "zh": "九"}}]
    data.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\n")
    args = [
        str(output),
        "--test_file",
        str(data),
        "--source_lang",
        "en",
        "--target_lang",
        "zh",
        "--output_dir",
        str(tmp_path),
    ]
    run_script("evaluate_model.py", args, monkeypatch)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["samples"] == 2 and set(metrics) >= {"bleu", "chrf", "exact_match"}
    assert len((tmp_path / "predictions.jsonl").read_text().splitlines()) == 2


def test_train_on_files_with_bpe_copy_coverage_and_pretrained_embeddings(tmp_path, capsys):
    rows = [
        {"document": f"the {w} sat on the {v} mat", "summary": f"{w} {v}"}
        for w in "cat dog cow".split()
        for v in "red big".split()
    ]
    for split in ("train", "validation"):
        (tmp_path / f"{split}.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("2 16\n" + "\n".join(f"{w} " + " ".join(["0.5"] * 16) for w in ("cat", "mat")) + "\n")
    args = ["--train_file", str(tmp_path / "train.jsonl"), "--validation_file", str(tmp_path / "validation.jsonl"),
            "--text_column", "document", "--summary_column", "summary", "--tokenizer_kind", "bpe",
            "--tokenizer_vocab_size", "60", "--use_copy", "true", "--use_coverage", "true",
            "--pretrained_embeddings", str(vectors), "--output_dir", str(tmp_path / "run"), *TINY]  # fmt: skip
    results = script("train.py")["main"](args)
    assert "eval_rouge1" in results and "eval_bleu" in results
    model = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "run")
    assert model.config.use_copy and model.config.use_coverage


@pytest.mark.parametrize(
    "args, error",
    [
        (["--train_file", "missing.jsonl", "--source_lang", "en", "--target_lang", "zh"], "does not exist"),
        (["--train_file", "{empty}", "--source_lang", "en", "--target_lang", "zh"], "is empty"),
        (["--train_file", "{data}", "--source_lang", "en", "--target_lang", "fr"], "Language key 'fr'"),
        (["--train_file", "{data}", "--text_column", "source", "--summary_column", "target"], "Column 'source'"),
        (["--train_file", "{data}"], "Say which columns"),
    ],
    ids=["missing-file", "empty-file", "unknown-language", "missing-column", "no-columns"],
)
def test_train_rejects_bad_data_with_clear_errors(tmp_path, args, error):
    data, empty = tmp_path / "data.jsonl", tmp_path / "empty.jsonl"
    data.write_text(json.dumps({"translation": {"en": "one", "zh": "一"}}) + "\n")
    empty.write_text("")
    args = [a.format(data=data, empty=empty) for a in args]
    with pytest.raises((ValueError, FileNotFoundError), match=error):
        script("train.py")["main"]([*args, "--output_dir", str(tmp_path / "run"), *TINY])


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


def test_train_resumes_from_a_checkpoint(tmp_path):
    train = script("train.py")["main"]
    common = ["--output_dir", str(tmp_path), "--max_train_samples", "128", "--max_eval_samples", "8", *TINY]
    train([*common, "--max_predict_samples", "8"])
    checkpoints = sorted(tmp_path.glob("checkpoint-*"))
    assert checkpoints, "train.py saves a checkpoint per epoch"
    resumed = train(
        [*common, "--num_train_epochs", "2", "--resume_from_checkpoint", str(checkpoints[-1])]
    )  # last wins
    state = json.loads((tmp_path / "trainer_state.json").read_text())
    assert state["epoch"] == 2.0 and "train_runtime" in resumed


def test_plain_accelerate_loop_example(tmp_path):
    metrics, count = script("train_accelerate.py")["main"](
        ["--epochs", "1", "--train_size", "200", "--test_size", "13", "--output_dir", str(tmp_path / "out")]
    )
    assert count == 13 and 0 <= metrics["bleu"] <= 100 and 0 <= metrics["exact_match"] <= 1
    assert (tmp_path / "out" / "model.safetensors").is_file() and (tmp_path / "out" / "tokenizer.json").is_file()


def test_product_timer_times_each_product_with_its_flops_and_counts_the_rest():
    import torch

    timer = script("profile_step.py")["product_timer"]()
    a, b, c = torch.ones(3, 4), torch.ones(4, 5), torch.zeros(3, 5)
    with timer:
        torch.mm(a, b)
        torch.addmm(c, a, b)
        c.clone().addmm_(a, b)
        torch.bmm(a[None], b[None])
        c[None].clone().baddbmm_(a[None], b[None])
        a @ b[:, 0]  # a matrix-vector product
        a.exp()
    by_shape = {key: (calls, flops) for key, (seconds, calls, flops) in timer.by_shape.items()}
    assert by_shape == {  # 2·M·N·K each, with the operand shapes as called
        ("mm", ((3, 4), (4, 5))): (1, 120),
        ("addmm", ((3, 5), (3, 4), (4, 5))): (1, 120),
        ("addmm_", ((3, 5), (3, 4), (4, 5))): (1, 120),
        ("bmm", ((1, 3, 4), (1, 4, 5))): (1, 120),
        ("baddbmm_", ((1, 3, 5), (1, 3, 4), (1, 4, 5))): (1, 120),
        ("mv", ((3, 4), (4,))): (1, 24),
    }
    assert timer.other_ops >= 1  # exp (and whatever a view or select dispatches)
    assert all(seconds > 0 for seconds, _, _ in timer.by_shape.values())


def test_profile_step_prints_tables_and_the_products_share(monkeypatch, capsys):
    args = ["--vocab_size", "40", "--batch_size", "4", "--length", "3", "5", "--steps", "1", "--rows", "3"]
    args += ["--decode_batch_size", "2", "--decode_length", "3", "--num_beams", "2", "--use_copy", "--use_coverage"]
    run_script("profile_step.py", args, monkeypatch)
    out = capsys.readouterr().out
    assert "== training step" in out and "== generate()" in out
    shares = [line for line in out.splitlines() if "matrix products timed where they run" in line]
    assert len(shares) == 2  # training, then decoding
    for line in shares:
        percent = float(line.split("(")[1].split("%")[0])
        assert 0 < percent and "other operators" in line
