"""transformers' example scripts (`run_translation.py`, `run_summarization.py`) fine-tune our checkpoints unchanged.

The scripts are not part of this repository. `test_the_example_scripts` runs them through
`scripts/check_hf_examples.py` when `HF_EXAMPLES_DIR` names transformers' `examples/pytorch` folder
(`HF_EXAMPLES_COMPAT=1` for copies written for transformers 4.x). The always-on test makes, in an interpreter where
this package cannot be imported, each call those scripts make on a model, tokenizer and metric."""

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from hf_rnn_seq2seq import RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration
from hf_rnn_seq2seq.metrics_rnn_seq2seq import export_metric_modules
from hf_rnn_seq2seq.tasks_rnn_seq2seq import make_task

from .conftest import WITHOUT_PACKAGE, word_level_tokenizer

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"

# The calls of run_translation.py, in its order, on a folder of ours; prints what the test checks.
EXAMPLE_SCRIPT_CALLS = WITHOUT_PACKAGE + textwrap.dedent(
    """
    import json, sys
    import evaluate, numpy as np
    from datasets import load_dataset
    from transformers import (AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer, DataCollatorForSeq2Seq,
                              Seq2SeqTrainer, Seq2SeqTrainingArguments)

    folder, data, output_dir, label_smoothing = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder, config=config, trust_remote_code=True)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    checks = {
        "decoder_start_token_id": model.config.decoder_start_token_id is not None,
        "no_position_limit": not hasattr(model.config, "max_position_embeddings"),
        "prepare_decoder_input_ids_from_labels": hasattr(model, "prepare_decoder_input_ids_from_labels"),
    }
    raw = load_dataset("json", data_files={"train": f"{data}/train.jsonl", "validation": f"{data}/validation.jsonl"})

    def preprocess(examples):
        inputs = tokenizer([ex["en"] for ex in examples["translation"]], max_length=64, truncation=True)
        targets = tokenizer(text_target=[ex["zh"] for ex in examples["translation"]], max_length=64, truncation=True)
        inputs["labels"] = targets["input_ids"]
        return inputs

    tokenized = raw.map(preprocess, batched=True, remove_columns=["translation"])
    collator = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)
    metric = evaluate.load("sacrebleu")  # the exported module in the working folder: no Hub

    def compute_metrics(eval_preds):
        preds, labels = eval_preds
        preds = tokenizer.batch_decode(np.where(preds != -100, preds, tokenizer.pad_token_id), skip_special_tokens=True)
        labels = np.where(labels != -100, labels, tokenizer.pad_token_id)
        references = [[text.strip()] for text in tokenizer.batch_decode(labels, skip_special_tokens=True)]
        result = {"bleu": metric.compute(predictions=[p.strip() for p in preds], references=references)["score"]}
        return {k: round(v, 4) for k, v in result.items()}

    args = Seq2SeqTrainingArguments(
        output_dir, max_steps=6, per_device_train_batch_size=8, per_device_eval_batch_size=8, learning_rate=3e-3,
        label_smoothing_factor=label_smoothing, predict_with_generate=True, report_to="none", save_strategy="no",
    )
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=tokenized["train"],
                             eval_dataset=tokenized["validation"], processing_class=tokenizer, data_collator=collator,
                             compute_metrics=compute_metrics)
    train_loss = trainer.train().training_loss
    trainer.save_model()
    metrics = trainer.evaluate(max_length=20, num_beams=4, metric_key_prefix="eval")
    predicted = trainer.predict(tokenized["validation"], metric_key_prefix="predict", max_length=20, num_beams=4)
    ids = np.where(predicted.predictions != -100, predicted.predictions, tokenizer.pad_token_id)
    texts = tokenizer.batch_decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True)
    trainer.create_model_card(finetuned_from=folder, tasks="translation", language=["en", "zh"])
    print(json.dumps({
        "checks": checks, "module": type(model).__module__, "train_loss": train_loss, "eval": metrics,
        "predict": predicted.metrics, "texts": texts, "max_id": int(ids.max()), "tokenizer_size": len(tokenizer),
    }))
    """
)


def _numbers_folder(tmp_path, **overrides):
    data = make_task("numbers", seed=3, sizes=(64, 12, 1))
    words = sorted({w for pair in data["train"]["translation"] for text in pair.values() for w in text.split()})
    tokenizer = word_level_tokenizer(words)
    config = RNNSeq2SeqConfig(vocab_size=len(tokenizer), embedding_size=16, hidden_size=32, **overrides)
    torch.manual_seed(0)
    folder = tmp_path / "base"
    RNNSeq2SeqForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (tmp_path / "data").mkdir()
    for split in ("train", "validation"):
        with open(tmp_path / "data" / f"{split}.jsonl", "w", encoding="utf-8") as out:
            out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in data[split])
    return folder


@pytest.mark.parametrize(
    "overrides, label_smoothing",
    [(dict(), 0.1), (dict(use_copy=True, copy_extended_vocab=True, max_source_oovs=4, use_coverage=True), 0.0)],
    ids=["attention-trainer-label-smoothing", "copyext-coverage"],
)
def test_the_calls_of_the_example_scripts_work_without_the_package(overrides, label_smoothing, tmp_path):
    folder = _numbers_folder(tmp_path, **overrides)
    workdir = tmp_path / "work"
    export_metric_modules(workdir, ["sacrebleu"])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1", HF_DATASETS_CACHE=str(tmp_path / "ds"))
    result = subprocess.run(
        [sys.executable, "-c", EXAMPLE_SCRIPT_CALLS, str(folder), str(tmp_path / "data"), str(tmp_path / "out"),
         str(label_smoothing)],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(report["checks"].values()), report["checks"]
    assert not report["module"].startswith("hf_rnn_seq2seq")  # the folder's own code ran
    assert report["train_loss"] > 0 and "eval_bleu" in report["eval"] and "predict_bleu" in report["predict"]
    assert len(report["texts"]) == 12 and report["max_id"] < report["tokenizer_size"]  # decodable ids only

    output = tmp_path / "out"  # what trainer.save_model wrote: self-contained again, and loadable here
    assert {"configuration_rnn_seq2seq.py", "modeling_rnn_seq2seq.py", "tokenizer.json"} <= set(os.listdir(output))
    assert set(json.loads((output / "config.json").read_text())["auto_map"]) >= {"AutoConfig", "AutoModelForSeq2SeqLM"}
    model = AutoModelForSeq2SeqLM.from_pretrained(output)
    tokenizer = AutoTokenizer.from_pretrained(output)
    assert model.config.use_copy == bool(overrides) and len(tokenizer) == model.config.vocab_size


def test_training_without_labels_warns_that_the_coverage_loss_is_left_out(caplog):
    """Trainer's `label_smoothing_factor` pops the labels and computes the loss itself: say what is lost."""
    config = RNNSeq2SeqConfig(vocab_size=12, embedding_size=8, hidden_size=8, use_copy=True, use_coverage=True)
    model = RNNSeq2SeqForConditionalGeneration(config).train()
    ids = torch.tensor([[4, 5, 6, 2]])
    logging.Logger.warning_once.cache_clear()  # transformers emits each warning once per process
    with caplog.at_level(logging.WARNING):
        model(input_ids=ids, decoder_input_ids=ids)
    assert "coverage loss is left out" in caplog.text


@pytest.mark.skipif(
    not os.environ.get("HF_EXAMPLES_DIR"), reason="set HF_EXAMPLES_DIR to transformers/examples/pytorch"
)
def test_the_example_scripts(tmp_path):
    command = [sys.executable, str(SCRIPTS / "check_hf_examples.py"), "--examples_dir", os.environ["HF_EXAMPLES_DIR"],
               "--workdir", str(tmp_path)]  # fmt: skip
    if os.environ.get("HF_EXAMPLES_COMPAT") == "1":
        command.append("--compat_older_scripts")
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert result.stdout.count("OK   ") == 2
