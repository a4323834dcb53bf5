"""Offline metrics: the package's evaluate scripts load by path without the network and agree with the libraries."""

import socket
import warnings

import evaluate
import numpy as np
import pytest
import sacrebleu
from rouge_score import rouge_scorer
from sacrebleu.metrics import CHRF

from hf_rnn_seq2seq.metrics_rnn_seq2seq import (
    METRICS_DIR,
    available_metrics,
    compute_generation_metrics,
    load_metric,
)

NAMES = ["sacrebleu", "chrf", "rouge", "exact_match"]

PREDICTIONS = [
    "the cat sat on the mat",
    "hello there general kenobi",
    "a quick brown dog jumps over the lazy fox",
    "one two three four",
]
REFERENCES = [
    "the cat is sitting on the mat",
    "hello there general kenobi",
    "the quick brown fox jumps over the lazy dog",
    "one two three five",
]
SECOND_REFERENCES = [
    "a cat sat on a mat",
    "hello general kenobi",
    "a quick brown dog jumped over the lazy fox",
    "one two three four",
]
MULTI = [[a, b] for a, b in zip(REFERENCES, SECOND_REFERENCES, strict=True)]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """HF_HUB_OFFLINE=1 and no socket may connect: any network access fails the test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_available_metrics_are_the_shipped_folders():
    assert available_metrics() == sorted(NAMES)
    for name in NAMES:
        assert (METRICS_DIR / name / f"{name}.py").is_file()


@pytest.mark.parametrize("name", NAMES)
def test_each_metric_loads_offline_by_path(name):
    metric = evaluate.load(str(METRICS_DIR / name), keep_in_memory=True)
    assert isinstance(metric, evaluate.Metric)
    assert metric.info.description and metric.info.inputs_description
    features = metric.info.features
    assert isinstance(features, list) and len(features) == 2  # several references, or one
    assert {tuple(f) for f in features} == {("predictions", "references")}
    single = metric.compute(predictions=PREDICTIONS, references=REFERENCES)
    multi = load_metric(name).compute(predictions=PREDICTIONS, references=MULTI)
    assert isinstance(single, dict) and isinstance(multi, dict) and single.keys() == multi.keys()


def test_bleu_equals_sacrebleu():
    bleu = load_metric("sacrebleu")
    expected = sacrebleu.corpus_bleu(PREDICTIONS, [REFERENCES])
    result = bleu.compute(predictions=PREDICTIONS, references=REFERENCES)
    assert list(result) == ["score", "counts", "totals", "precisions", "bp", "sys_len", "ref_len"]
    assert result["score"] == pytest.approx(expected.score)
    assert 0 < result["score"] < 100
    assert result["counts"] == expected.counts and result["totals"] == expected.totals
    assert result["precisions"] == pytest.approx(expected.precisions)
    assert (result["bp"], result["sys_len"], result["ref_len"]) == (expected.bp, expected.sys_len, expected.ref_len)

    # several references per prediction: SacreBLEU's reference streams are the transposed lists
    multi = bleu.compute(predictions=PREDICTIONS, references=MULTI)
    assert multi["score"] == pytest.approx(sacrebleu.corpus_bleu(PREDICTIONS, [REFERENCES, SECOND_REFERENCES]).score)
    assert multi["score"] > result["score"]

    options = dict(tokenize="char", lowercase=True, smooth_method="floor", smooth_value=0.2)
    upper = [p.upper() for p in PREDICTIONS]
    assert bleu.compute(predictions=upper, references=REFERENCES, **options)["score"] == pytest.approx(
        sacrebleu.corpus_bleu(upper, [REFERENCES], **options).score
    )


def test_bleu_with_different_numbers_of_references():
    references = [MULTI[0], [REFERENCES[1]], MULTI[2], [REFERENCES[3]]]
    streams = [REFERENCES, [SECOND_REFERENCES[0], None, SECOND_REFERENCES[2], None]]
    result = load_metric("sacrebleu").compute(predictions=PREDICTIONS, references=references)
    assert result["score"] == pytest.approx(sacrebleu.corpus_bleu(PREDICTIONS, streams).score)


def test_chrf_equals_sacrebleu():
    chrf = load_metric("chrf")
    result = chrf.compute(predictions=PREDICTIONS, references=REFERENCES)
    assert result["score"] == pytest.approx(CHRF().corpus_score(PREDICTIONS, [REFERENCES]).score)
    assert (result["char_order"], result["word_order"], result["beta"]) == (6, 0, 2)

    plus = chrf.compute(predictions=PREDICTIONS, references=MULTI, word_order=2, lowercase=True, beta=1)
    expected = CHRF(word_order=2, lowercase=True, beta=1).corpus_score(PREDICTIONS, [REFERENCES, SECOND_REFERENCES])
    assert plus["score"] == pytest.approx(expected.score) and plus["word_order"] == 2


def test_rouge_equals_rouge_score():
    types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    scorer = rouge_scorer.RougeScorer(types, use_stemmer=True)
    rouge = load_metric("rouge")

    per_example = rouge.compute(predictions=PREDICTIONS, references=REFERENCES, use_stemmer=True, use_aggregator=False)
    expected = [scorer.score(ref, pred) for ref, pred in zip(REFERENCES, PREDICTIONS, strict=True)]
    for key in types:
        assert per_example[key] == pytest.approx([score[key].fmeasure for score in expected])

    result = rouge.compute(predictions=PREDICTIONS, references=REFERENCES, use_stemmer=True)
    assert list(result) == types
    for key in types:
        assert result[key] == pytest.approx(np.mean(per_example[key]))
        assert 0 < result[key] < 1

    multi = rouge.compute(predictions=PREDICTIONS, references=MULTI, use_stemmer=True, use_aggregator=False)
    expected = [scorer.score_multi(refs, pred) for refs, pred in zip(MULTI, PREDICTIONS, strict=True)]
    assert multi["rouge2"] == pytest.approx([score["rouge2"].fmeasure for score in expected])

    bootstrap = rouge.compute(predictions=PREDICTIONS, references=REFERENCES, use_stemmer=True, use_bootstrap=True)
    assert all(0 <= bootstrap[key] <= 1 for key in types)


def test_rouge_tokenizer_for_text_without_latin_letters():
    rouge = load_metric("rouge")
    predictions, references = ["一 二 三", "四 五"], ["一 二 四", "四 五"]
    with pytest.warns(UserWarning, match="tokenizer='whitespace'"):
        assert rouge.compute(predictions=predictions, references=references)["rouge1"] == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = rouge.compute(predictions=predictions, references=references, tokenizer="whitespace")
    assert result["rouge1"] == pytest.approx((2 / 3 + 1) / 2)


def test_exact_match():
    exact_match = load_metric("exact_match")
    assert exact_match.compute(predictions=PREDICTIONS, references=REFERENCES) == {"exact_match": 0.25}
    assert exact_match.compute(predictions=PREDICTIONS, references=MULTI) == {"exact_match": 0.5}

    predictions = ["  The Cat. ", "一 二。", "abc 123"]
    references = ["the cat", "一 二", "abc 456"]
    assert exact_match.compute(predictions=predictions, references=references)["exact_match"] == 0.0
    normalized = exact_match.compute(
        predictions=predictions, references=references, strip=True, lowercase=True, ignore_punctuation=True
    )
    assert normalized["exact_match"] == pytest.approx(2 / 3)
    everything = exact_match.compute(
        predictions=predictions,
        references=references,
        strip=True,
        ignore_case=True,
        ignore_punctuation=True,
        ignore_numbers=True,
    )
    assert everything["exact_match"] == 1.0


def test_compute_generation_metrics_keys_and_scales():
    perfect = compute_generation_metrics(REFERENCES, REFERENCES, metrics=("sacrebleu", "chrf", "exact_match", "rouge"))
    assert set(perfect) == {"bleu", "chrf", "exact_match", "rouge1", "rouge2", "rougeL", "rougeLsum"}
    assert all(type(value) is float for value in perfect.values())
    assert perfect["bleu"] == pytest.approx(100) and perfect["chrf"] == pytest.approx(100)  # 0-100
    assert perfect["exact_match"] == 1.0 and perfect["rouge1"] == pytest.approx(1.0)  # 0-1

    default = compute_generation_metrics(PREDICTIONS, REFERENCES)
    assert set(default) == {"bleu", "chrf", "exact_match"}
    assert default["bleu"] == pytest.approx(sacrebleu.corpus_bleu(PREDICTIONS, [REFERENCES]).score)
    assert default["chrf"] == pytest.approx(CHRF().corpus_score(PREDICTIONS, [REFERENCES]).score)
    assert default["exact_match"] == 0.25

    multi = compute_generation_metrics(PREDICTIONS, MULTI, metrics=["sacrebleu", "exact_match"])
    assert multi["exact_match"] == 0.5 and multi["bleu"] > default["bleu"]
    mixed = compute_generation_metrics(PREDICTIONS, [MULTI[0], *REFERENCES[1:]], metrics=["exact_match"])
    assert mixed == {"exact_match": 0.25}

    options = compute_generation_metrics(
        ["一 二 三"], ["一 二 四"], metrics=["rouge"], metric_kwargs={"rouge": {"tokenizer": "whitespace"}}
    )
    assert options["rouge1"] == pytest.approx(2 / 3)


def test_unknown_metric_and_bad_inputs():
    with pytest.raises(ValueError, match=r"'bleu'.*chrf, exact_match, rouge, sacrebleu"):
        load_metric("bleu")
    with pytest.raises(ValueError, match="Unknown metric"):
        compute_generation_metrics(PREDICTIONS, REFERENCES, metrics=("sacrebleu", "meteor"))
    with pytest.raises(ValueError, match="4 predictions but 3 references"):
        compute_generation_metrics(PREDICTIONS, REFERENCES[:3])
    with pytest.raises(ValueError, match="No predictions"):
        compute_generation_metrics([], [])
    with pytest.raises(TypeError, match="list of strings"):
        compute_generation_metrics("the cat", "the cat")
    with pytest.raises(ValueError, match="not among the metrics"):
        compute_generation_metrics(PREDICTIONS, REFERENCES, metric_kwargs={"rouge": {}})


def test_exported_metric_modules_load_by_name_from_their_folder(tmp_path, monkeypatch):
    import evaluate

    from hf_rnn_seq2seq.metrics_rnn_seq2seq import export_metric_modules

    written = export_metric_modules(tmp_path, ["sacrebleu", "rouge"])
    assert written == [tmp_path / "sacrebleu" / "sacrebleu.py", tmp_path / "rouge" / "rouge.py"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert evaluate.load("sacrebleu").compute(predictions=["a b c d"], references=[["a b c d"]])[
        "score"
    ] == pytest.approx(100)
    with pytest.raises(ValueError, match="Unknown metric"):
        export_metric_modules(tmp_path, ["bertscore"])
