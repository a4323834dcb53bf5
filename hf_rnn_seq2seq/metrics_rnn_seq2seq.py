# Copyright 2026 The hf-rnn-seq2seq authors. Licensed under the Apache License, Version 2.0.
"""Offline generation metrics: BLEU, chrF, ROUGE and exact match without the Hugging Face Hub.

`evaluate.load("sacrebleu")` downloads the metric script from the Hub. This package ships its own scripts (in
`hf_rnn_seq2seq/metrics/<name>/<name>.py`, written for evaluate 0.4.x, with the results of the Hub's metrics), which
`evaluate.load` reads from the package folder: nothing is fetched, so they work with `HF_HUB_OFFLINE=1` and on
machines without internet. evaluate copies a script into its modules cache (`HF_MODULES_CACHE`) under a file lock the
first time, so several processes may load them at once.

```python
>>> from hf_rnn_seq2seq.metrics_rnn_seq2seq import compute_generation_metrics, load_metric
>>> bleu = load_metric("sacrebleu")  # an evaluate.Metric, as evaluate.load would give
>>> bleu.compute(predictions=["the cat sat"], references=[["the cat sat"]])["score"]
100.0
>>> compute_generation_metrics(["the cat sat"], ["the cat sat on the mat"], metrics=("sacrebleu", "exact_match"))
{'bleu': 36.78..., 'exact_match': 0.0}
```

Scripts that call `evaluate.load("sacrebleu")` / `evaluate.load("rouge")` by name (transformers' `run_translation.py`
and `run_summarization.py`) find a metric in a folder of that name in their working directory before trying the Hub:
`python -m hf_rnn_seq2seq.metrics_rnn_seq2seq --export-to DIR` (or `export_metric_modules(DIR)`) writes
`DIR/sacrebleu/sacrebleu.py`, `DIR/rouge/rouge.py`, ... so those scripts run offline when started from `DIR`.
"""

import argparse
import re
import shutil
from collections import Counter
from collections.abc import Container, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "METRICS_DIR",
    "available_metrics",
    "compute_generation_metrics",
    "copy_and_repetition_statistics",
    "export_metric_modules",
    "load_metric",
    "oov_reproduction",
    "words",
]

METRICS_DIR = Path(__file__).resolve().parent / "metrics"

# Which numbers of each metric's result `compute_generation_metrics` reports, and under which name.
_REPORTED = {
    "sacrebleu": {"score": "bleu"},
    "chrf": {"score": "chrf"},
    "exact_match": {"exact_match": "exact_match"},
    "rouge": {"rouge1": "rouge1", "rouge2": "rouge2", "rougeL": "rougeL", "rougeLsum": "rougeLsum"},
}


def available_metrics() -> list[str]:
    """The names `load_metric` accepts: the metric folders shipped with the package."""
    return sorted(path.name for path in METRICS_DIR.iterdir() if (path / f"{path.name}.py").is_file())


def load_metric(name: str, **kwargs: Any):
    """Loads one of the package's offline metrics with `evaluate.load(<package>/metrics/<name>)`.

    Args:
        name (`str`): `"sacrebleu"`, `"chrf"`, `"rouge"` or `"exact_match"` (see `available_metrics()`).
        kwargs: passed to `evaluate.load` (`experiment_id`, `cache_dir`, `num_process`, `process_id`, ...).
            `keep_in_memory` defaults to `True` here (predictions are not written to an Arrow cache file); pass
            `keep_in_memory=False` for distributed evaluation.

    Returns:
        `evaluate.Metric`: call `.compute(predictions=..., references=..., **options)`; the options of each metric are
        in its `.inputs_description`.

    Raises:
        `ValueError`: for a name that is not one of the package's metrics.
    """
    import evaluate

    names = available_metrics()
    if not isinstance(name, str) or name not in names:
        raise ValueError(
            f"Unknown metric {name!r}: the offline metrics of hf_rnn_seq2seq are {', '.join(names)}. (Hub metrics "
            "load with evaluate.load(name) when online.)"
        )
    if kwargs.get("num_process", 1) == 1:
        kwargs.setdefault("keep_in_memory", True)
    return evaluate.load(str(METRICS_DIR / name), **kwargs)


def export_metric_modules(directory: str | Path = ".", names: Sequence[str] | None = None) -> list[Path]:
    """Copies the package's metric scripts to `directory/<name>/<name>.py`, where `evaluate.load("<name>")` run from
    `directory` finds them (evaluate looks for a local folder of that name before the Hub). Existing files of the
    same name are replaced. Returns the written scripts."""
    names = available_metrics() if names is None else list(names)
    unknown = sorted(set(names) - set(available_metrics()))
    if unknown:
        raise ValueError(f"Unknown metric(s) {unknown}: the offline metrics are {', '.join(available_metrics())}.")
    written = []
    for name in names:
        target = Path(directory) / name
        target.mkdir(parents=True, exist_ok=True)
        written.append(Path(shutil.copy2(METRICS_DIR / name / f"{name}.py", target / f"{name}.py")))
    return written


def _check_inputs(predictions: Any, references: Any) -> None:
    if isinstance(predictions, str) or not isinstance(predictions, Sequence):
        raise TypeError(f"`predictions` must be a list of strings, got {type(predictions).__name__}.")
    if isinstance(references, str) or not isinstance(references, Sequence):
        raise TypeError(f"`references` must be a list (of strings or of lists of strings), got {type(references)}.")
    if len(predictions) != len(references):
        raise ValueError(f"Got {len(predictions)} predictions but {len(references)} references: one entry each.")
    if not predictions:
        raise ValueError("No predictions to score.")
    for i, prediction in enumerate(predictions):
        if not isinstance(prediction, str):
            raise TypeError(f"predictions[{i}] is a {type(prediction).__name__}, not a string.")
    for i, refs in enumerate(references):
        if isinstance(refs, str):
            continue
        if not isinstance(refs, Sequence) or not refs or not all(isinstance(ref, str) for ref in refs):
            raise TypeError(f"references[{i}] must be a string or a non-empty list of strings, got {refs!r}.")


def compute_generation_metrics(
    predictions: list[str],
    references: list[str] | list[list[str]],
    metrics: Sequence[str] = ("sacrebleu", "chrf", "exact_match"),
    metric_kwargs: dict[str, dict[str, Any]] | None = None,
) -> dict[str, float]:
    """Scores generated texts with several offline metrics and returns flat floats (e.g. for `compute_metrics` of a
    `Seq2SeqTrainer`, whose logs want scalars).

    Args:
        predictions (`list[str]`): the generated texts (decoded, e.g. with `batch_decode_with_source_oovs`).
        references (`list[str]` or `list[list[str]]`): one reference per prediction, or a list of references each.
        metrics (sequence of `str`): which metrics: `"sacrebleu"`, `"chrf"`, `"rouge"`, `"exact_match"`.
        metric_kwargs (`dict`, *optional*): options per metric, passed to its `compute`, e.g.
            `{"sacrebleu": {"tokenize": "zh"}, "rouge": {"tokenizer": "whitespace"}, "exact_match": {"strip": True}}`.

    Returns:
        `dict[str, float]` with, depending on `metrics`:

        - `bleu`: corpus BLEU (SacreBLEU, default `13a` tokenisation), **0–100**;
        - `chrf`: corpus chrF (chrF++ with `{"chrf": {"word_order": 2}}`), **0–100**;
        - `rouge1`, `rouge2`, `rougeL`, `rougeLsum`: mean ROUGE F-measures, **0–1** (rouge-score's default tokenizer
          keeps only [a-z0-9]: use `{"rouge": {"tokenizer": "whitespace"}}` for e.g. space-separated Chinese);
        - `exact_match`: fraction of predictions equal to a reference, **0–1**.

    Raises:
        `ValueError`: unknown metric names, empty input, predictions and references of different lengths.
        `TypeError`: inputs that are not (lists of) strings.
    """
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = list(dict.fromkeys(metrics))
    unknown = [name for name in metrics if name not in _REPORTED]
    if unknown:
        raise ValueError(f"Unknown metric(s) {unknown}: choose from {', '.join(sorted(_REPORTED))}.")
    metric_kwargs = dict(metric_kwargs or {})
    stray = sorted(set(metric_kwargs) - set(metrics))
    if stray:
        raise ValueError(f"metric_kwargs given for {stray}, which are not among the metrics {metrics}.")
    _check_inputs(predictions, references)
    predictions = list(predictions)
    if all(isinstance(ref, str) for ref in references):
        references = list(references)
    else:  # a batch is either single or multiple references throughout (one feature type per column)
        references = [[ref] if isinstance(ref, str) else list(ref) for ref in references]

    results: dict[str, float] = {}
    for name in metrics:
        output = load_metric(name).compute(
            predictions=predictions, references=references, **metric_kwargs.get(name, {})
        )
        for key, reported in _REPORTED[name].items():
            if key in output:
                if isinstance(output[key], (list, tuple)):
                    raise ValueError(
                        f"{name} returned one {key} per prediction; compute_generation_metrics reports corpus "
                        f"numbers (use load_metric({name!r}) for per-prediction scores)."
                    )
                results[reported] = float(output[key])
    return results


# ---------------------------------------------------------------------------------------------------------------------
# Text statistics of what copy and coverage change (no library computes these): words copied from the source, repeated
# n-grams (See et al. 2017, Figure 4), and out-of-vocabulary reference words reproduced.
# ---------------------------------------------------------------------------------------------------------------------

_WORD = re.compile(r"\w+|[^\w\s]+")  # the split of the package's word-level tokenizer (tokenizers' `Whitespace`)


def words(text: str) -> list[str]:
    """Splits `text` into words and punctuation runs, as the package's word-level tokenizer does."""
    return _WORD.findall(text)


def copy_and_repetition_statistics(sources: Sequence[str], texts: Sequence[str], n: int = 3) -> dict[str, float]:
    """How much of `texts` (summaries, generated or reference) is copied from `sources`, and how repetitive it is.

    Returns (over the whole corpus, words lowercased):

    - `copied_word_share`: the share of the texts' words that occur in their own source;
    - `novel_ngram_share`: the share of the texts' n-grams that do not occur in their source (abstraction);
    - `repeated_ngram_rate`: the share of the texts' n-grams that repeat an n-gram earlier in the same text (See et
      al. 2017 compare this for outputs with and without coverage, and for the reference summaries).
    """
    _check_inputs(list(texts), list(sources))
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}.")
    copied = total_words = novel = repeated = total_ngrams = 0
    for source, text in zip(sources, texts, strict=True):
        source_words = [w.lower() for w in words(source)]
        text_words = [w.lower() for w in words(text)]
        vocabulary = set(source_words)
        copied += sum(word in vocabulary for word in text_words)
        total_words += len(text_words)
        source_ngrams = set(zip(*(source_words[i:] for i in range(n)), strict=False))
        ngrams = list(zip(*(text_words[i:] for i in range(n)), strict=False))
        novel += sum(ngram not in source_ngrams for ngram in ngrams)
        repeated += len(ngrams) - len(set(ngrams))
        total_ngrams += len(ngrams)
    return {
        "copied_word_share": copied / max(total_words, 1),
        "novel_ngram_share": novel / max(total_ngrams, 1),
        "repeated_ngram_rate": repeated / max(total_ngrams, 1),
    }


def oov_reproduction(
    sources: Sequence[str], predictions: Sequence[str], references: Sequence[str], vocabulary: Container[str]
) -> dict[str, float]:
    """How many of the reference words outside `vocabulary` (the model's word-level vocabulary) the predictions
    reproduce: a word-level model without copy can only write them as `<unk>`.

    Counts are clipped per sentence (a reference OOV word occurring twice needs two occurrences in the prediction).
    Returns `reference_oov_words` (their number), `oov_reproduced` (the share reproduced), and the same two for the
    `copyable` ones: the OOV words that also occur in the source, which a copy mechanism can reach.
    """
    _check_inputs(list(predictions), list(references))
    if len(sources) != len(predictions):
        raise ValueError(f"Got {len(sources)} sources but {len(predictions)} predictions: one each.")
    found = total = copyable_found = copyable_total = 0
    for source, prediction, reference in zip(sources, predictions, references, strict=True):
        wanted = Counter(word for word in words(reference) if word not in vocabulary)
        produced = Counter(words(prediction))
        in_source = set(words(source))
        for word, count in wanted.items():
            hits = min(count, produced[word])
            found += hits
            total += count
            if word in in_source:
                copyable_found += hits
                copyable_total += count
    return {
        "reference_oov_words": float(total),
        "oov_reproduced": found / total if total else 0.0,
        "copyable_oov_words": float(copyable_total),
        "copyable_oov_reproduced": copyable_found / copyable_total if copyable_total else 0.0,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Offline metric scripts for `evaluate.load(name)`.")
    parser.add_argument("--export-to", required=True, metavar="DIR", help="folder to write <name>/<name>.py into")
    parser.add_argument("--metrics", nargs="+", default=None, help=f"default: all ({', '.join(available_metrics())})")
    args = parser.parse_args(argv)
    for path in export_metric_modules(args.export_to, args.metrics):
        print(path)


if __name__ == "__main__":
    main()
