# Copyright 2026 The hf-rnn-seq2seq authors. Licensed under the Apache License, Version 2.0.
"""ROUGE (Google Research's `rouge-score`) as an offline `evaluate` metric: `evaluate.load("path/to/metrics/rouge")`.

Written against evaluate 0.4.x (options are `compute()` keywords); the result has the keys of the Hub's `rouge` metric
(`rouge1`, `rouge2`, `rougeL`, `rougeLsum`: F-measures, 0-1).
"""

import re
import warnings

import datasets
import evaluate
import numpy as np
from rouge_score import rouge_scorer, scoring

_CITATION = """\
@inproceedings{lin-2004-rouge,
    title = "{ROUGE}: A Package for Automatic Evaluation of Summaries",
    author = "Lin, Chin-Yew",
    booktitle = "Text Summarization Branches Out",
    month = jul,
    year = "2004",
    address = "Barcelona, Spain",
    publisher = "Association for Computational Linguistics",
    url = "https://www.aclweb.org/anthology/W04-1013",
    pages = "74--81",
}
"""

_DESCRIPTION = """\
ROUGE (Recall-Oriented Understudy for Gisting Evaluation) compares predictions with references by n-gram overlap
(rouge1, rouge2) and longest common subsequence (rougeL; rougeLsum on newline-separated sentences). This wraps Google
Research's reimplementation (`rouge-score`), whose default tokenizer lowercases and keeps only the characters
[a-z0-9]: text in other scripts (Chinese, Cyrillic, accented letters...) scores 0 unless another `tokenizer` is given
(`tokenizer="whitespace"` for text with spaces between its tokens).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): the predictions, one string each.
    references (`list[str]` or `list[list[str]]`): one reference per prediction, or a list of references per prediction
        (each score is that of the reference with the highest F-measure, per ROUGE type).
    rouge_types (`list[str]`, defaults to `["rouge1", "rouge2", "rougeL", "rougeLsum"]`): `"rouge{n}"` for n-gram
        overlap (n = 1..9), `"rougeL"` (longest common subsequence), `"rougeLsum"` (summary-level LCS over sentences
        separated by `"\\n"`).
    use_stemmer (`bool`, defaults to `False`): Porter-stem words (default tokenizer only).
    use_aggregator (`bool`, defaults to `True`): return one number per type (the mean F-measure over predictions)
        rather than a list with one F-measure per prediction.
    use_bootstrap (`bool`, defaults to `False`): with `use_aggregator`, report the median of rouge-score's bootstrap
        resampling of the mean (1000 resamples; what the Hub's `rouge` metric reports, seeded by numpy's state) rather
        than the mean itself. The two agree to within sampling noise.
    tokenizer (`callable` or `str`, *optional*): a function from text to a list of tokens, or `"whitespace"`
        (`str.split`, case kept). Defaults to rouge-score's tokenizer (lowercase, [a-z0-9] only, stemming optional).

Returns:
    rouge1, rouge2, rougeL, rougeLsum (the requested types): F-measure, 0-1 (a float, or a list with
    `use_aggregator=False`).

Example:
    >>> rouge = evaluate.load("hf_rnn_seq2seq/metrics/rouge")
    >>> rouge.compute(predictions=["hello there", "general kenobi"], references=["hello there", "general kenobi"])
    {'rouge1': 1.0, 'rouge2': 1.0, 'rougeL': 1.0, 'rougeLsum': 1.0}
"""

_DEFAULT_TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
_DEFAULT_TOKEN = re.compile(r"[a-z0-9]")


class _Tokenizer:
    """Wraps a callable into the object with a `tokenize` method that rouge-score expects."""

    def __init__(self, function):
        self.function = function

    def tokenize(self, text):
        return self.function(text)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Rouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value("string", id="sequence"),
                        "references": datasets.Sequence(datasets.Value("string", id="sequence")),
                    }
                ),
                datasets.Features(
                    {
                        "predictions": datasets.Value("string", id="sequence"),
                        "references": datasets.Value("string", id="sequence"),
                    }
                ),
            ],
            codebase_urls=["https://github.com/google-research/google-research/tree/master/rouge"],
            reference_urls=[
                "https://en.wikipedia.org/wiki/ROUGE_(metric)",
                "https://github.com/google-research/google-research/tree/master/rouge",
            ],
        )

    def _compute(
        self,
        predictions,
        references,
        rouge_types=None,
        use_aggregator=True,
        use_stemmer=False,
        use_bootstrap=False,
        tokenizer=None,
    ):
        rouge_types = list(_DEFAULT_TYPES if rouge_types is None else rouge_types)
        if tokenizer == "whitespace":
            tokenizer = str.split
        elif isinstance(tokenizer, str):
            raise ValueError(f"tokenizer must be a callable, 'whitespace' or None, got {tokenizer!r}.")
        if tokenizer is None:
            self._warn_if_untokenizable(predictions, references)
        scorer = rouge_scorer.RougeScorer(
            rouge_types=rouge_types,
            use_stemmer=use_stemmer,
            tokenizer=_Tokenizer(tokenizer) if tokenizer is not None else None,
        )
        scores = []
        for prediction, refs in zip(predictions, references, strict=True):
            if isinstance(refs, str):
                scores.append(scorer.score(refs, prediction))
            else:
                scores.append(scorer.score_multi(list(refs), prediction))

        if not use_aggregator:
            return {key: [float(score[key].fmeasure) for score in scores] for key in rouge_types}
        if use_bootstrap:
            aggregator = scoring.BootstrapAggregator()
            for score in scores:
                aggregator.add_scores(score)
            return {key: float(value.mid.fmeasure) for key, value in aggregator.aggregate().items()}
        return {key: float(np.mean([score[key].fmeasure for score in scores])) for key in rouge_types}

    @staticmethod
    def _warn_if_untokenizable(predictions, references):
        texts = list(predictions)
        for refs in references:
            texts.extend([refs] if isinstance(refs, str) else refs)
        for text in texts:
            if text.strip() and not _DEFAULT_TOKEN.search(text.lower()):
                warnings.warn(
                    f"rouge-score's default tokenizer finds no token in {text[:40]!r} (it keeps only [a-z0-9] after "
                    "lowercasing), so such texts score 0. Pass tokenizer='whitespace' (text with spaces between its "
                    "tokens) or a tokenizer function.",
                    stacklevel=2,
                )
                return
