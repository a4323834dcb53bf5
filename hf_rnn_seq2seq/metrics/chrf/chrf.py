# Copyright 2026 The hf-rnn-seq2seq authors. Licensed under the Apache License, Version 2.0.
"""chrF / chrF++ (SacreBLEU's `CHRF`) as an offline `evaluate` metric: `evaluate.load("path/to/metrics/chrf")`.

Written against evaluate 0.4.x (options are `compute()` keywords); the result has the keys of the Hub's `chrf` metric.
"""

import datasets
import evaluate
from sacrebleu.metrics import CHRF

_CITATION = """\
@inproceedings{popovic-2015-chrf,
    title = "chr{F}: character n-gram {F}-score for automatic {MT} evaluation",
    author = "Popovi{\\'c}, Maja",
    booktitle = "Proceedings of the Tenth Workshop on Statistical Machine Translation",
    month = sep,
    year = "2015",
    address = "Lisbon, Portugal",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/W15-3049",
    pages = "392--395",
}
@inproceedings{popovic-2017-chrf,
    title = "chr{F}++: words helping character n-grams",
    author = "Popovi{\\'c}, Maja",
    booktitle = "Proceedings of the Second Conference on Machine Translation",
    month = sep,
    year = "2017",
    address = "Copenhagen, Denmark",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/W17-4770",
    pages = "612--618",
}
@inproceedings{post-2018-call,
    title = "A Call for Clarity in Reporting {BLEU} Scores",
    author = "Post, Matt",
    booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers",
    year = "2018",
    url = "https://www.aclweb.org/anthology/W18-6319",
    pages = "186--191",
}
"""

_DESCRIPTION = """\
chrF (Popović 2015) is the F-score of character n-gram precision and recall (recall weighted `beta` times as much),
averaged over n = 1..char_order; chrF++ (Popović 2017) adds word n-grams up to `word_order`. Corpus-level, computed
by SacreBLEU. It needs no tokenisation, which makes it a good fit for character-based outputs such as Chinese.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): the system outputs, one string per segment.
    references (`list[str]` or `list[list[str]]`): one reference string per prediction, or a list of references per
        prediction (the best-matching one counts). Predictions may have different numbers of references.
    char_order (`int`, defaults to 6): character n-gram order.
    word_order (`int`, defaults to 0): word n-gram order; 2 gives chrF++.
    beta (`int`, defaults to 2): recall is weighted `beta` times as much as precision.
    lowercase (`bool`, defaults to `False`): case-insensitive chrF.
    whitespace (`bool`, defaults to `False`): keep whitespace in character n-grams.
    eps_smoothing (`bool`, defaults to `False`): the epsilon smoothing of chrF++.py / NLTK / Moses instead of the
        effective-order smoothing of SacreBLEU 2.

Returns:
    score (`float`): chrF (or chrF++), 0-100.
    char_order (`int`), word_order (`int`), beta (`int`): the settings used.

Example:
    >>> chrf = evaluate.load("hf_rnn_seq2seq/metrics/chrf")
    >>> chrf.compute(predictions=["the cat sat"], references=[["the cat sat"]])["score"]
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
class ChrF(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            homepage="https://github.com/mjpost/sacreBLEU#chrf--chrf",
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
            codebase_urls=["https://github.com/mjpost/sacreBLEU#chrf--chrf"],
            reference_urls=["https://github.com/m-popovic/chrF"],
        )

    def _compute(
        self,
        predictions,
        references,
        char_order=CHRF.CHAR_ORDER,
        word_order=CHRF.WORD_ORDER,
        beta=CHRF.BETA,
        lowercase=False,
        whitespace=False,
        eps_smoothing=False,
    ):
        scorer = CHRF(
            char_order=char_order,
            word_order=word_order,
            beta=beta,
            lowercase=lowercase,
            whitespace=whitespace,
            eps_smoothing=eps_smoothing,
        )
        output = scorer.corpus_score(list(predictions), _reference_streams(references))
        return {"score": output.score, "char_order": output.char_order, "word_order": output.word_order, "beta": beta}
