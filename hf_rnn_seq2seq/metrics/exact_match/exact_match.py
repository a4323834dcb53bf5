# Copyright 2026 The hf-rnn-seq2seq authors. Licensed under the Apache License, Version 2.0.
"""Exact match as an offline `evaluate` metric: `evaluate.load("path/to/metrics/exact_match")`.

Written against evaluate 0.4.x; options and result key (`exact_match`, 0-1) as in the Hub's `exact_match` metric, plus
`strip`, `lowercase` (an alias of `ignore_case`) and several references per prediction.
"""

import re
import string
import unicodedata

import datasets
import evaluate

_CITATION = ""

_DESCRIPTION = """\
The fraction of predictions that are exactly equal to their reference (to any of their references), after the
optional normalisations below (applied to predictions and references alike, in the order listed).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): the predictions.
    references (`list[str]` or `list[list[str]]`): one reference per prediction, or a list of references per
        prediction (a prediction matches when it equals any of them).
    regexes_to_ignore (`list[str]`, *optional*): regular expressions whose matches are removed first.
    strip (`bool`, defaults to `False`): remove leading and trailing whitespace.
    ignore_case (`bool`, defaults to `False`): lowercase everything (`lowercase` is the same option).
    ignore_punctuation (`bool`, defaults to `False`): remove ASCII punctuation (`string.punctuation`) and every
        Unicode punctuation character (categories P*, e.g. the CJK `，。`).
    ignore_numbers (`bool`, defaults to `False`): remove the digits 0-9.

Returns:
    exact_match (`float`): the fraction of matching predictions, 0-1.

Example:
    >>> exact_match = evaluate.load("hf_rnn_seq2seq/metrics/exact_match")
    >>> exact_match.compute(predictions=["the cat", "a dog"], references=["the cat", "the dog"])
    {'exact_match': 0.5}
"""

_ASCII_PUNCTUATION = set(string.punctuation)


def _remove_punctuation(text: str) -> str:
    return "".join(c for c in text if c not in _ASCII_PUNCTUATION and not unicodedata.category(c).startswith("P"))


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ExactMatch(evaluate.Metric):
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
            reference_urls=["https://huggingface.co/spaces/evaluate-metric/exact_match"],
        )

    def _compute(
        self,
        predictions,
        references,
        regexes_to_ignore=None,
        strip=False,
        ignore_case=False,
        lowercase=None,
        ignore_punctuation=False,
        ignore_numbers=False,
    ):
        if lowercase is not None:
            ignore_case = ignore_case or lowercase
        patterns = [re.compile(regex) for regex in (regexes_to_ignore or [])]
        digits = str.maketrans("", "", string.digits)

        def normalize(text: str) -> str:
            for pattern in patterns:
                text = pattern.sub("", text)
            if strip:
                text = text.strip()
            if ignore_case:
                text = text.lower()
            if ignore_punctuation:
                text = _remove_punctuation(text)
            if ignore_numbers:
                text = text.translate(digits)
            return text

        matches = []
        for prediction, refs in zip(predictions, references, strict=True):
            refs = [refs] if isinstance(refs, str) else list(refs)
            if not refs:
                raise ValueError("Every prediction needs at least one reference.")
            prediction = normalize(prediction)
            matches.append(any(prediction == normalize(ref) for ref in refs))
        return {"exact_match": sum(matches) / len(matches) if matches else 0.0}
