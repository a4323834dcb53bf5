"""Train and evaluate an RNN encoder-decoder with `Seq2SeqTrainer` (`RNNSeq2SeqTrainer`: see trainer_rnn_seq2seq.py).

With no arguments it runs the lecture's exercise on a built-in generated task: English number words to Chinese
numerals (`seven zero three → 七 零 三`), an LSTM encoder-decoder with attention, beam search at evaluation; about
a minute on 2 CPU cores. `--task names` shows why copy matters (made-up names the vocabulary cannot hold).

    python scripts/train.py                                   # the built-in numbers task → runs/numbers
    python scripts/train.py --task names --output_dir runs/names
    python scripts/train.py --train_file train.jsonl --validation_file dev.jsonl --source_lang de --target_lang en \\
        --tokenizer_kind bpe --tokenizer_vocab_size 8000 --attention_type general --output_dir runs/de-en
    python scripts/train.py --train_file cnndm.jsonl --text_column article --summary_column highlights \\
        --use_copy true --use_coverage true --output_dir runs/summaries
    torchrun --nproc_per_node 2 scripts/train.py ...          # 2 processes (CPU: gloo; GPUs: one each, NCCL)
    accelerate launch --multi_gpu --num_processes 2 scripts/train.py ...   # the same through Accelerate

Data: JSON Lines or CSV files in the layouts of the HF example scripts (`{"translation": {"de": …, "en": …}}` with
`--source_lang/--target_lang`, or flat columns with `--text_column/--summary_column`), or a Hub dataset
(`--dataset_name`, online only). A tokenizer is trained on the training split (`--tokenizer_kind word|bpe|unigram|char`)
unless `--tokenizer_name` gives an existing one. Every `RNNSeq2SeqConfig` field is an option (see --help), or take a
whole config with `--config_name`, or fine-tune a saved model with `--model_name_or_path`. Metrics (BLEU, chrF, exact
match; ROUGE for summaries) come from the package's offline metric modules. The output folder receives the best model
with its tokenizer and generation config, a model card (`README.md`), `all_results.json`, `predictions.jsonl`,
`trainer_state.json` and `training_curve.png`.
"""

import dataclasses
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

os.environ.setdefault("OMP_NUM_THREADS", "1")  # LSTMs on few cores: oversubscribed threads are ~30x slower

import numpy as np
import torch
from datasets import DatasetDict
from transformers import (
    AutoConfig,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    HfArgumentParser,
    Seq2SeqTrainingArguments,
    set_seed,
)

import hf_rnn_seq2seq  # noqa: F401  (registers the model with the Auto classes)
from hf_rnn_seq2seq import (
    DataCollatorForCopySeq2Seq,
    RNNSeq2SeqConfig,
    RNNSeq2SeqForConditionalGeneration,
    batch_decode_keeping_unknown,
    batch_decode_with_source_oovs,
    prepare_copy_inputs,
)
from hf_rnn_seq2seq.metrics_rnn_seq2seq import compute_generation_metrics
from hf_rnn_seq2seq.modelcard_rnn_seq2seq import write_model_card
from hf_rnn_seq2seq.tasks_rnn_seq2seq import TASKS, load_text_pairs
from hf_rnn_seq2seq.tokenization_rnn_seq2seq import TOKENIZER_KINDS, load_pretrained_embeddings, train_tokenizer
from hf_rnn_seq2seq.trainer_rnn_seq2seq import RNNSeq2SeqTrainer

logger = logging.getLogger("train")

# ---------------------------------------------------------------------------------------------------------------------
# Arguments: every RNNSeq2SeqConfig field is an option, documented from the config's own docstring.
# ---------------------------------------------------------------------------------------------------------------------

CONFIG_FIELDS = [
    "embedding_size", "hidden_size", "encoder_hidden_size", "encoder_layers", "decoder_layers", "cell_type",
    "bidirectional_encoder", "dropout", "attention_type", "input_feeding", "bridge", "use_copy", "copy_extended_vocab",
    "max_source_oovs", "use_coverage", "coverage_loss_weight", "tie_word_embeddings",
    "share_encoder_decoder_embeddings", "label_smoothing", "initializer_range",
]  # fmt: skip


def _config_help() -> dict[str, str]:
    """Field name -> its description in RNNSeq2SeqConfig's docstring."""
    helps, name, lines = {}, None, []
    for line in (RNNSeq2SeqConfig.__doc__ or "").splitlines():
        match = re.match(r"^ {8}(\w+) \(", line)
        if match:
            if name:
                helps[name] = " ".join(lines)
            name, lines = match.group(1), []
        elif name and line.startswith(" " * 12):
            lines.append(line.strip())
    if name:
        helps[name] = " ".join(lines)
    return helps


def _model_arguments_class():
    helps, annotations = _config_help(), RNNSeq2SeqConfig.__annotations__
    fields = [
        ("model_name_or_path", str | None, field(default=None, metadata={"help": "A saved model to fine-tune."})),
        (
            "config_name",
            str | None,
            field(default=None, metadata={"help": "A config.json (or folder) to start from."}),
        ),
    ]
    for name in CONFIG_FIELDS:
        kind = annotations[name]
        if kind == float | int:
            kind = float
        elif kind == int | None:
            kind = int
        kind = kind | None  # None: keep the config's (or the task's) default
        default = RNNSeq2SeqConfig.__dataclass_fields__[name].default
        text = f"{helps.get(name, '')} (config default: {default}; the built-in tasks set their own sizes)"
        fields.append((name, kind, field(default=None, metadata={"help": text})))
    return dataclasses.make_dataclass("ModelArguments", fields)


ModelArguments = _model_arguments_class()


@dataclass
class DataArguments:
    task: Literal[tuple(TASKS)] | None = field(  # type: ignore[valid-type]
        default=None,
        metadata={"help": "A built-in generated task (numbers, names); the default when no data is given is numbers."},
    )
    dataset_name: str | None = field(default=None, metadata={"help": "A dataset on the Hub (needs internet)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Its configuration name."})
    train_file: str | None = field(default=None, metadata={"help": "Training data: .json/.jsonl or .csv."})
    validation_file: str | None = field(default=None, metadata={"help": "Validation data (same format)."})
    test_file: str | None = field(default=None, metadata={"help": "Test data (same format)."})
    source_lang: str | None = field(default=None, metadata={"help": "Source key of the `translation` column."})
    target_lang: str | None = field(default=None, metadata={"help": "Target key of the `translation` column."})
    text_column: str | None = field(default=None, metadata={"help": "Source column (flat layout)."})
    summary_column: str | None = field(default=None, metadata={"help": "Target column (flat layout)."})
    max_source_length: int = field(default=256, metadata={"help": "Longer sources are truncated (tokens)."})
    max_target_length: int = field(default=128, metadata={"help": "Longer targets are truncated (tokens)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only this many training pairs."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only this many validation pairs."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Use only this many test pairs."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Use this tokenizer instead of training one."})
    tokenizer_kind: Literal[TOKENIZER_KINDS] = field(  # type: ignore[valid-type]
        default="word", metadata={"help": "Tokenizer trained on the training split: word, bpe, unigram or char."}
    )
    tokenizer_vocab_size: int = field(
        default=8000, metadata={"help": "Its largest vocabulary (special tokens included)."}
    )
    tokenizer_min_frequency: int = field(default=1, metadata={"help": "Rarer tokens are left out (read as <unk>)."})
    lowercase: bool = field(default=False, metadata={"help": "Lowercase the text before tokenising."})
    tokenizer_split_cjk: bool = field(
        default=False, metadata={"help": "Every Chinese/Japanese character is a token (character-level Chinese)."}
    )
    bleu_tokenize: str = field(
        default="13a", metadata={"help": "sacreBLEU tokenisation of the BLEU scores: 13a, or zh for Chinese, ..."}
    )
    pretrained_embeddings: str | None = field(
        default=None, metadata={"help": "GloVe/word2vec text file: fill the embeddings of the words it has."}
    )
    freeze_embeddings: bool = field(default=False, metadata={"help": "Do not train the pretrained embeddings."})
    num_examples_to_print: int = field(default=6, metadata={"help": "Test translations printed at the end."})


# Settings of the built-in tasks (model sizes; training) that the command line can still override.
TASK_MODEL_DEFAULTS = {
    "numbers": dict(embedding_size=64, hidden_size=128, encoder_layers=1, decoder_layers=1, dropout=0.1),
    "names": dict(
        embedding_size=64, hidden_size=128, encoder_layers=1, decoder_layers=1, dropout=0.1,
        use_copy=True, copy_extended_vocab=True, max_source_oovs=4,
    ),
}  # fmt: skip
TASK_TRAINING_DEFAULTS = dict(
    num_train_epochs=6, per_device_train_batch_size=64, per_device_eval_batch_size=100, learning_rate=3e-3,
    warmup_steps=30, logging_steps=25,
)  # fmt: skip
TRAINING_DEFAULTS = dict(
    predict_with_generate=True, generation_num_beams=5, eval_strategy="epoch", save_strategy="epoch",
    save_total_limit=2, load_best_model_at_end=True, metric_for_best_model="bleu", report_to="none",
    ddp_find_unused_parameters=False,  # every parameter takes part in every configuration's loss
)  # fmt: skip


def parse_args(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = HfArgumentParser((ModelArguments, DataArguments, Seq2SeqTrainingArguments))
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(json_file=os.path.abspath(argv[0]))
    # Defaults that depend on the task: a first pass finds it, then they become the parser's defaults.
    data_args = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)[1]
    task = data_args.task or (None if (data_args.train_file or data_args.dataset_name) else "numbers")
    defaults = dict(TRAINING_DEFAULTS, output_dir=f"runs/{task or 'model'}")
    if task:
        defaults.update(TASK_TRAINING_DEFAULTS, task=task)
    parser.set_defaults(**defaults)
    return parser.parse_args_into_dataclasses(args=argv)


# ---------------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------------


def load_raw_data(data_args) -> tuple[DatasetDict, str, str]:
    files = {"train": data_args.train_file, "validation": data_args.validation_file, "test": data_args.test_file}
    return load_text_pairs(
        task=data_args.task,
        dataset_name=data_args.dataset_name,
        dataset_config_name=data_args.dataset_config_name,
        data_files={split: path for split, path in files.items() if path},
        source_lang=data_args.source_lang,
        target_lang=data_args.target_lang,
        text_column=data_args.text_column,
        summary_column=data_args.summary_column,
    )


def limit(dataset, count):
    return dataset if count is None else dataset.select(range(min(count, len(dataset))))


# ---------------------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------------------


def build_model(model_args, data_args, tokenizer):
    given = {name: getattr(model_args, name) for name in CONFIG_FIELDS if getattr(model_args, name) is not None}
    if model_args.model_name_or_path:
        # Fields given on the command line change the saved model's config: e.g. `--use_coverage true` continues a
        # pointer-generator with coverage (See et al. 2017's final phase); the coverage weights start new.
        return AutoModelForSeq2SeqLM.from_pretrained(model_args.model_name_or_path, **given)
    overrides = dict(TASK_MODEL_DEFAULTS.get(data_args.task, {}))
    overrides.update(given)
    special_ids = dict(
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        unk_token_id=tokenizer.unk_token_id,
        decoder_start_token_id=tokenizer.bos_token_id
        if tokenizer.bos_token_id is not None
        else tokenizer.pad_token_id,
    )
    if model_args.config_name:
        config = AutoConfig.from_pretrained(model_args.config_name, **overrides)
        config.vocab_size = max(config.vocab_size, len(tokenizer))
        for key, value in special_ids.items():
            setattr(config, key, value)
        config.validate()
    else:
        config = RNNSeq2SeqConfig(vocab_size=len(tokenizer), **special_ids, **overrides)
    return RNNSeq2SeqForConditionalGeneration(config)


def plot_training_curve(log_history, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.info("matplotlib is not installed: no training_curve.png (pip install hf-rnn-seq2seq[plot])")
        return
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e]
    evaluation = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e]
    figure, axis = plt.subplots(figsize=(6, 4), dpi=100)
    for points, label in ((train, "training loss"), (evaluation, "validation loss")):
        if points:
            axis.plot(*zip(*points, strict=True), marker="o" if label.startswith("validation") else None, label=label)
    axis.set_xlabel("step")
    axis.set_ylabel("loss")
    if train or evaluation:
        axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


# ---------------------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------------------


def main(argv=None):
    model_args, data_args, training_args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    set_seed(training_args.seed)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    start = time.perf_counter()

    with training_args.main_process_first(desc="data"):
        raw, source_column, target_column = load_raw_data(data_args)
    if "train" not in raw and training_args.do_train is not False and not model_args.model_name_or_path:
        raise ValueError("There is no training split; give --train_file.")
    train_raw = limit(raw["train"], data_args.max_train_samples) if "train" in raw else None
    eval_raw = limit(raw["validation"], data_args.max_eval_samples) if "validation" in raw else None
    test_raw = limit(raw["test"], data_args.max_predict_samples) if "test" in raw else None

    # Tokenizer: an existing one, or one trained on the training split only (by the first process of each machine,
    # which saves it to the output folder; the other processes load that one, so every process has the same).
    if data_args.tokenizer_name or model_args.model_name_or_path:
        tokenizer = AutoTokenizer.from_pretrained(data_args.tokenizer_name or model_args.model_name_or_path)
    else:
        with training_args.main_process_first(desc="tokenizer"):
            if training_args.world_size > 1 and training_args.local_process_index > 0:
                tokenizer = AutoTokenizer.from_pretrained(training_args.output_dir)
            else:
                texts = (text for column in (source_column, target_column) for text in train_raw[column])
                tokenizer = train_tokenizer(
                    texts,
                    kind=data_args.tokenizer_kind,
                    vocab_size=data_args.tokenizer_vocab_size,
                    min_frequency=data_args.tokenizer_min_frequency,
                    lowercase=data_args.lowercase,
                    split_cjk=data_args.tokenizer_split_cjk,
                )
                if training_args.world_size > 1:
                    tokenizer.save_pretrained(training_args.output_dir)
    model = build_model(model_args, data_args, tokenizer)
    config = model.config
    if data_args.pretrained_embeddings:
        found = load_pretrained_embeddings(
            model, tokenizer, data_args.pretrained_embeddings, data_args.freeze_embeddings
        )
        logger.info(
            "Pretrained embeddings: %d of %d vocabulary entries found among %d vectors%s",
            found["matched"], found["vocabulary"], found["vectors"], " (frozen)" if data_args.freeze_embeddings else "",
        )  # fmt: skip
    model.generation_config.max_length = data_args.max_target_length + 1
    logger.info("Model: %s parameters, vocabulary %d", f"{model.num_parameters():,}", len(tokenizer))

    extended = config.use_copy and config.copy_extended_vocab

    def preprocess(batch):
        if extended:
            return prepare_copy_inputs(
                tokenizer,
                config,
                batch[source_column],
                batch[target_column],
                max_length=data_args.max_source_length,
                max_target_length=data_args.max_target_length,
            )
        features = tokenizer(batch[source_column], max_length=data_args.max_source_length, truncation=True)
        targets = tokenizer(text_target=batch[target_column], max_length=data_args.max_target_length, truncation=True)
        return features | {"labels": targets["input_ids"]}

    with training_args.main_process_first(desc="tokenise"):
        datasets = {
            name: split.map(preprocess, batched=True)
            for name, split in (("train", train_raw), ("validation", eval_raw), ("test", test_raw))
            if split is not None
        }

    decoding = {"split": "validation"}  # the split being generated: compute_metrics sees ids only, not which rows

    def decode(sequences, split):
        sequences = np.where(np.asarray(sequences) < 0, tokenizer.pad_token_id, sequences)
        if extended:
            return [
                t.strip()
                for t in batch_decode_with_source_oovs(
                    tokenizer, sequences, datasets[split]["source_oovs"], config.vocab_size
                )
            ]
        return [t.strip() for t in batch_decode_keeping_unknown(tokenizer, sequences)]  # `<unk>` kept, as above

    def compute_metrics(prediction):
        split = decoding["split"]
        predictions = decode(prediction.predictions, split)
        references = list(datasets[split][target_column])
        metrics = ("sacrebleu", "chrf", "exact_match") + (("rouge",) if data_args.summary_column else ())
        options = {"sacrebleu": {"tokenize": data_args.bleu_tokenize}}
        return compute_generation_metrics(predictions, references, metrics=metrics, metric_kwargs=options)

    def model_inputs(split):
        """The split without its text columns (and `source_oovs`): what the collator and the model take."""
        dataset = datasets[split]
        keep = {"input_ids", "attention_mask", "labels", "extended_input_ids"}
        return dataset.remove_columns([c for c in dataset.column_names if c not in keep])

    if "validation" not in datasets:  # nothing to evaluate or choose the best checkpoint on
        training_args.eval_strategy = "no"
        training_args.load_best_model_at_end = False
    trainer = RNNSeq2SeqTrainer(
        model=model,
        args=training_args,
        train_dataset=model_inputs("train") if "train" in datasets else None,
        eval_dataset=model_inputs("validation") if "validation" in datasets else None,
        data_collator=(DataCollatorForCopySeq2Seq if extended else DataCollatorForSeq2Seq)(tokenizer, model=model),
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
    )

    results = {}
    if training_args.do_train or "train" in datasets:
        train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        trainer.save_model()  # the best model (load_best_model_at_end), its tokenizer and generation config
        results.update(train_result.metrics)
        trainer.save_state()
        if trainer.is_world_process_zero():
            plot_training_curve(trainer.state.log_history, Path(training_args.output_dir) / "training_curve.png")
    if "validation" in datasets:
        decoding["split"] = "validation"
        results.update(trainer.evaluate(metric_key_prefix="eval"))
    lines = []
    if "test" in datasets:
        decoding["split"] = "test"
        test = datasets["test"]
        output = trainer.predict(model_inputs("test"), metric_key_prefix="test")
        results.update(output.metrics)
        predictions = decode(output.predictions, "test")
        lines = [
            {"source": s, "prediction": p, "reference": r}
            for s, p, r in zip(test[source_column], predictions, test[target_column], strict=True)
        ]
        if trainer.is_world_process_zero():
            with open(Path(training_args.output_dir) / "predictions.jsonl", "w", encoding="utf-8") as f:
                for line in lines:
                    f.write(json.dumps(line, ensure_ascii=False) + "\n")
    results["wall_time_s"] = round(time.perf_counter() - start, 1)
    trainer.save_metrics("all", results)
    if trainer.is_world_process_zero():
        sources = (test_raw or eval_raw or train_raw)[source_column]
        write_model_card(
            trainer.model,
            training_args.output_dir,
            model_name=Path(training_args.output_dir).name,
            datasets=[data_args.dataset_name or data_args.task or Path(data_args.train_file).name],
            languages=[data_args.source_lang, data_args.target_lang] if data_args.source_lang else None,
            metrics=results,
            training_command="python scripts/train.py " + " ".join(sys.argv[1:] if argv is None else argv),
            training_summary=(
                f"{len(train_raw) if train_raw is not None else 0} training pairs; tokenizer: "
                f"{data_args.tokenizer_name or data_args.tokenizer_kind}; {training_args.num_train_epochs} epochs, "
                f"learning rate {training_args.learning_rate}, batch {training_args.per_device_train_batch_size}; "
                f"{results['wall_time_s']:.0f} s in all on this run's hardware."
            ),
            example_input=sources[0] if len(sources) else "",
        )

    if trainer.is_world_process_zero():
        for line in lines[: data_args.num_examples_to_print]:
            print(f"  {line['source']:<45} → {line['prediction']}   (reference: {line['reference']})")
        shown = {
            k: round(v, 4) for k, v in results.items() if k.startswith(("eval_", "test_")) and isinstance(v, float)
        }
        print(f"Results: {json.dumps(shown)}")
        print(
            f"Finished in {results['wall_time_s']:.0f} s. Model, tokenizer and results saved to {training_args.output_dir}"
        )
    return results


if __name__ == "__main__":
    main()
