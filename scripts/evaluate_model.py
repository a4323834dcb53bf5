"""Score a saved model on a test file: BLEU, chrF and exact match (and ROUGE for summaries), offline.

    python scripts/evaluate_model.py runs/numbers --test_file test.jsonl --source_lang en --target_lang zh
    python scripts/evaluate_model.py runs/summaries --test_file test.jsonl --text_column article --summary_column highlights \\
        --num_beams 4 --coverage_penalty 0.2
    python scripts/evaluate_model.py runs/numbers --task numbers        # the built-in task's test split

    python scripts/evaluate_model.py runs/en-zh --test_file test.jsonl --source_lang en --target_lang zh --bleu_tokenize zh
    python scripts/evaluate_model.py runs/pg --test_file val.jsonl --text_column source --summary_column target \
        --copy_statistics                     # + copied-word share and repeated trigrams, of outputs and references
    python scripts/evaluate_model.py runs/oov --test_file val.jsonl --source_lang de --target_lang en --oov_statistics
    python scripts/evaluate_model.py --lead 3 --test_file val.jsonl --text_column source --summary_column target \
        --copy_statistics                     # the lead-3 baseline: each source's first 3 sentences, no model

The test file has the layouts of scripts/train.py (JSON Lines or CSV; a `translation` column with language keys, or
flat columns). Writes `metrics.json` and `predictions.jsonl` (source, prediction, reference) to `--output_dir`
(default: the model folder) and prints the metrics: sacreBLEU (cased `bleu` and `bleu_lowercase`, with
`--bleu_tokenize`), chrF, exact match, ROUGE for summaries, decoding speed, and the statistics asked for.

(Not named `evaluate.py`: a script of that name in scripts/ would shadow the `evaluate` library for every script run
from this folder, since Python puts the script's folder first on the import path.)
"""

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch
from transformers import DataCollatorForSeq2Seq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from translate import add_generation_arguments, generation_kwargs, load, translate

from hf_rnn_seq2seq import DataCollatorForCopySeq2Seq, prepare_copy_inputs
from hf_rnn_seq2seq.metrics_rnn_seq2seq import (
    compute_generation_metrics,
    copy_and_repetition_statistics,
    oov_reproduction,
)
from hf_rnn_seq2seq.tasks_rnn_seq2seq import TASKS, load_text_pairs


@torch.inference_mode()
def reference_likelihood(model, tokenizer, sources, references, batch_size=32, max_source_length=None) -> dict:
    """The references' negative log-likelihood per target token under the model (teacher forcing, `</s>` included)
    and its perplexity: smoother than BLEU when comparing models early in training. Without label smoothing or the
    coverage loss; for copy models, of the final (mixture) distribution over the extended vocabulary."""
    config = model.config
    extended = config.use_copy and config.copy_extended_vocab
    collator = (DataCollatorForCopySeq2Seq if extended else DataCollatorForSeq2Seq)(tokenizer, model=model)
    truncation = dict(max_length=max_source_length, truncation=max_source_length is not None)
    total, count = 0.0, 0
    for start in range(0, len(sources), batch_size):
        chunk, targets = sources[start : start + batch_size], references[start : start + batch_size]
        if extended:
            features = prepare_copy_inputs(tokenizer, config, chunk, targets, **truncation)
            features.pop("source_oovs")
        else:
            features = dict(tokenizer(chunk, **truncation))
            features["labels"] = tokenizer(text_target=targets)["input_ids"]
        batch = collator([dict(zip(features, values, strict=True)) for values in zip(*features.values(), strict=True)])
        labels = batch.pop("labels")
        logits = model(**batch).logits  # (B, T, V′): scores, or log-probabilities for copy models
        mask = labels != -100
        log_probs = logits.float().log_softmax(-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        total -= log_probs[mask].sum().item()
        count += int(mask.sum())
    return {"reference_nll": total / count, "reference_perplexity": math.exp(total / count)}


# Abbreviations that end with a period inside English sentences (titles, countries, Latin, months, company forms).
ABBREVIATIONS = (
    "mr mrs ms dr prof st jr sr gen gov sen rep lt col sgt capt u.s u.k u.n e.g i.e vs al fig eq inc ltd corp "
    "jan feb mar apr jun jul aug sep sept oct nov dec"
)


def lead_sentences(sources: list[str], n: int) -> list[str]:
    """Each source's first `n` sentences, one per line (as ROUGE-Lsum and the CNN/DailyMail highlights expect).
    Sentence boundaries from nltk's Punkt (installed with rouge-score) with common abbreviations, not its trained
    English model: that would be a download (`sent_tokenize`)."""
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    parameters = PunktParameters()
    parameters.abbrev_types = set(ABBREVIATIONS.split())
    splitter = PunktSentenceTokenizer(parameters)
    return ["\n".join(splitter.tokenize(source)[:n]) for source in sources]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "model", nargs="?", help="a folder written by scripts/train.py or save_pretrained (model + tokenizer)"
    )
    parser.add_argument(
        "--lead",
        type=int,
        metavar="N",
        help="score the lead-N baseline instead of a model: each source's first N sentences (Punkt sentence "
        "boundaries), one per line; the extractive reference point of summarisation papers (lead-3 on CNN/DailyMail)",
    )
    parser.add_argument("--test_file", help="JSON Lines or CSV test data")
    parser.add_argument("--task", choices=sorted(TASKS), help="score on a built-in task's test split instead")
    parser.add_argument("--source_lang")
    parser.add_argument("--target_lang")
    parser.add_argument("--text_column")
    parser.add_argument("--summary_column")
    parser.add_argument("--max_samples", type=int, help="score only the first N pairs")
    parser.add_argument("--output_dir", help="where metrics.json and predictions.jsonl go (default: the model folder)")
    parser.add_argument("--bleu_tokenize", default="13a", help="sacreBLEU tokenisation: 13a (default), zh, intl, ...")
    parser.add_argument(
        "--copy_statistics",
        action="store_true",
        help="copied-word share, novel and repeated trigrams of the outputs and of the references",
    )
    parser.add_argument(
        "--perplexity",
        action="store_true",
        help="also the references' negative log-likelihood per token and perplexity (teacher forcing)",
    )
    parser.add_argument(
        "--oov_statistics",
        action="store_true",
        help="share of the reference words outside the model's vocabulary that the outputs reproduce",
    )
    add_generation_arguments(parser)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    if not (args.test_file or args.task):
        parser.error("give --test_file (with its column options) or --task")
    if (args.model is None) == (args.lead is None):
        parser.error("give a model folder, or --lead N for the lead-N baseline (not both)")
    if args.lead is not None and (args.lead < 1 or args.perplexity or args.oov_statistics):
        parser.error("--lead N needs N >= 1, and has no --perplexity or --oov_statistics (there is no model)")
    if args.lead is not None and args.output_dir is None:
        parser.error("--lead N needs --output_dir (there is no model folder to write into)")

    raw, source_column, target_column = load_text_pairs(
        task=args.task,
        data_files={"test": args.test_file} if args.test_file else None,
        source_lang=args.source_lang,
        target_lang=args.target_lang,
        text_column=args.text_column,
        summary_column=args.summary_column,
    )
    test = raw["test"]
    if args.max_samples is not None:
        test = test.select(range(min(args.max_samples, len(test))))
    sources, references = list(test[source_column]), list(test[target_column])
    start = time.perf_counter()
    if args.lead is not None:
        predictions = lead_sentences(sources, args.lead)
    else:
        model, tokenizer = load(args.model)
        kwargs = generation_kwargs(args)
        kwargs.pop("num_return_sequences", None)
        predictions = [
            outputs[0] for outputs in translate(model, tokenizer, sources, batch_size=args.batch_size, **kwargs)
        ]
    seconds = time.perf_counter() - start

    metric_names = ("sacrebleu", "chrf", "exact_match") + (("rouge",) if args.summary_column else ())
    bleu = {"tokenize": args.bleu_tokenize}
    metrics = compute_generation_metrics(
        predictions, references, metrics=metric_names, metric_kwargs={"sacrebleu": bleu}
    )
    lowercase = compute_generation_metrics(
        predictions, references, metrics=("sacrebleu",), metric_kwargs={"sacrebleu": bleu | {"lowercase": True}}
    )
    metrics["bleu_lowercase"] = lowercase["bleu"]
    if args.copy_statistics:
        metrics |= copy_and_repetition_statistics(sources, predictions)
        metrics |= {f"reference_{k}": v for k, v in copy_and_repetition_statistics(sources, references).items()}
    if args.perplexity:
        metrics |= reference_likelihood(model, tokenizer, sources, references, args.batch_size, args.max_source_length)
    if args.oov_statistics:
        metrics |= oov_reproduction(sources, predictions, references, tokenizer.get_vocab())
    metrics["samples"] = len(predictions)
    metrics["decoding_seconds"] = round(seconds, 2)
    metrics["sentences_per_second"] = round(len(predictions) / seconds, 2)
    output_dir = Path(args.output_dir or args.model)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    with open(output_dir / "predictions.jsonl", "w", encoding="utf-8") as f:
        for source, prediction, reference in zip(sources, predictions, references, strict=True):
            f.write(
                json.dumps({"source": source, "prediction": prediction, "reference": reference}, ensure_ascii=False)
            )
            f.write("\n")
    print(json.dumps(metrics))
    print(f"Metrics and predictions written to {output_dir}", file=sys.stderr)
    return metrics


if __name__ == "__main__":
    main()
