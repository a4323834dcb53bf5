# Copyright 2026 The hf-rnn-seq2seq authors. Licensed under the Apache License, Version 2.0.
"""SacreBLEU corpus BLEU as an offline `evaluate` metric: `evaluate.load("path/to/metrics/sacrebleu")`.

Written against evaluate 0.4.x (options are `compute()` keywords, as in the metric published for that version); the
result has the keys of the Hub's `sacrebleu` metric.
"""

import datasets
import evaluate
import sacrebleu as scb

_CITATION = """\
@inproceedings{post-2018-call,
    title = "A Call for Clarity in Reporting {BLEU} Scores",
    author = "Post, Matt",
    booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers",
    month = oct,
    year = "2018",
    address = "Belgium, Brussels",
    publisher = "Association for Computational Linguistics",
    url = "https://www.aclweb.org/anthology/W18-6319",
    pages = "186--191",
}
"""

_DESCRIPTION = """\
Corpus BLEU (Papineni et al. 2002) computed by SacreBLEU (`sacrebleu.corpus_bleu`), which tokenises the detokenised
text itself so that scores are comparable across papers. Predictions and references are plain (detokenised) strings.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): the system outputs, one string per segment.
    references (`list[str]` or `list[list[str]]`): one reference string per prediction, or a list of references per
        prediction. Predictions may have different numbers of references (missing ones are skipped).
    tokenize (`str`, defaults to `"13a"`): SacreBLEU tokenizer: `"13a"` (mteval-v13a, the WMT default), `"intl"`,
        `"zh"` (Chinese: characters), `"char"`, `"none"` (text is already tokenised), `"ja-mecab"`, `"ko-mecab"`,
        `"flores101"`, `"flores200"`.
    lowercase (`bool`, defaults to `False`): case-insensitive BLEU.
    smooth_method (`str`, defaults to `"exp"`): `"none"`, `"floor"`, `"add-k"` or `"exp"`.
    smooth_value (`float`, *optional*): the value for `"floor"` (default 0.1) or `"add-k"` (default 1).
    force (`bool`, defaults to `False`): do not complain about input that looks tokenised already.
    use_effective_order (`bool`, defaults to `False`): leave out n-gram orders without matches (for sentence BLEU).

Returns:
    score (`float`): BLEU, 0-100.
    counts (`list[int]`): matching n-grams, n = 1..4.
    totals (`list[int]`): n-grams in the predictions, n = 1..4.
    precisions (`list[float]`): n-gram precisions, 0-100.
    bp (`float`): brevity penalty.
    sys_len (`int`): length of the predictions (tokens).
    ref_len (`int`): effective reference length (tokens).

Example:
    >>> bleu = evaluate.load("hf_rnn_seq2seq/metrics/sacrebleu")
    >>> result = bleu.compute(predictions=["hello there general kenobi"], references=[["hello there general kenobi"]])
    >>> round(result["score"], 1)
    100.0
"""


def _reference_streams(references: list) -> list[list]:
    """Per-prediction references (a string or a list of strings) → SacreBLEU's streams: stream `i` holds the `i`-th
    reference of every prediction, `None` where a prediction has fewer."""
    per_prediction = [[refs] if isinstance(refs, str) else list(refs) for refs in references]
    if any(not refs for refs in per_prediction):
        raise ValueError("Every prediction needs at least one reference.")
    width = max(len(refs) for refs in per_prediction)
    return [[refs[i] if i < len(refs) else None for refs in per_prediction] for i in range(width)]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Sacrebleu(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            homepage="https://github.com/mjpost/sacreBLEU",
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value("string", id="sequence"),
                        "references": datasets.Sequence(datasets.Value("string", id="sequence"), id="references"),
                    }
                ),
                datasets.Features(
                    {
                        "predictions": datasets.Value("string", id="sequence"),
                        "references": datasets.Value("string", id="sequence"),
                    }
                ),
            ],
            codebase_urls=["https://github.com/mjpost/sacreBLEU"],
            reference_urls=["https://github.com/mjpost/sacreBLEU", "https://en.wikipedia.org/wiki/BLEU"],
        )

    def _compute(
        self,
        predictions,
        references,
        tokenize="13a",
        lowercase=False,
        smooth_method="exp",
        smooth_value=None,
        force=False,
        use_effective_order=False,
    ):
        output = scb.corpus_bleu(
            list(predictions),
            _reference_streams(references),
            smooth_method=smooth_method,
            smooth_value=smooth_value,
            force=force,
            lowercase=lowercase,
            tokenize=tokenize,
            use_effective_order=use_effective_order,
        )
        return {
            "score": output.score,
            "counts": output.counts,
            "totals": output.totals,
            "precisions": output.precisions,
            "bp": output.bp,
            "sys_len": output.sys_len,
            "ref_len": output.ref_len,
        }
