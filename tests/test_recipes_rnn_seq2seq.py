"""The real-data recipes' machinery, on generated data: the text statistics (copy share, repeated trigrams, OOV
words reproduced), character-level CJK in a shared vocabulary, the evaluation flags, and one recipe end to end
(train → evaluate → attention plot → model card and results table)."""

import json
import math
import runpy
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from hf_rnn_seq2seq.metrics_rnn_seq2seq import copy_and_repetition_statistics, oov_reproduction, words
from hf_rnn_seq2seq.tokenization_rnn_seq2seq import TOKENIZER_KINDS, train_tokenizer

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def test_words_split_like_the_word_tokenizer():
    assert words("Zorbu's cat, 3 mats!") == ["Zorbu", "'", "s", "cat", ",", "3", "mats", "!"]
    tokenizer = train_tokenizer(["Zorbu's cat, 3 mats!"], kind="word")
    assert tokenizer.tokenize("Zorbu's cat, 3 mats!") == words("Zorbu's cat, 3 mats!")


def test_copy_and_repetition_statistics():
    sources = ["the cat sat on the mat", "a b c d"]
    # summary 1: 6 words all in the source; trigrams (the cat the) (cat the cat) twice each → 2 of 4 repeated, all
    # novel. Summary 2: "a b c" is a source trigram, "x" is not a source word.
    stats = copy_and_repetition_statistics(sources, ["the cat the cat the cat", "a b c x"])
    assert stats["copied_word_share"] == pytest.approx(9 / 10)
    assert stats["repeated_ngram_rate"] == pytest.approx(2 / 6)
    assert stats["novel_ngram_share"] == pytest.approx(5 / 6)
    # A verbatim copy: every word copied, no novel or repeated trigram; case does not matter.
    assert copy_and_repetition_statistics(["The Cat sat on it"], ["the cat sat on it"]) == {
        "copied_word_share": 1.0,
        "novel_ngram_share": 0.0,
        "repeated_ngram_rate": 0.0,
    }
    assert copy_and_repetition_statistics(["a b"], ["a b"], n=1)["repeated_ngram_rate"] == 0.0
    with pytest.raises(ValueError, match="n must be"):
        copy_and_repetition_statistics(["a"], ["a"], n=0)
    with pytest.raises(ValueError, match="2 predictions but 1"):
        copy_and_repetition_statistics(["a"], ["a", "b"])


def test_oov_reproduction_clips_counts_and_separates_copyable_words():
    vocabulary = {"drinks", "tea", "with", "."}
    stats = oov_reproduction(
        sources=["Zorbu trinkt Tee mit Mira", "Zorbu Zorbu"],
        predictions=["Zorbu drinks tea with <unk> .", "Zorbu"],
        references=["Zorbu drinks tea with Mira .", "Zorbu and Zorbu"],
        vocabulary=vocabulary,
    )
    # OOV reference words: Zorbu, Mira | Zorbu ×2, and → 5; reproduced: Zorbu | Zorbu ×1 → 2. Copyable (in the
    # source): Zorbu, Mira, Zorbu ×2 → 4, of which 2 reproduced.
    assert stats == {
        "reference_oov_words": 5.0,
        "oov_reproduced": pytest.approx(2 / 5),
        "copyable_oov_words": 4.0,
        "copyable_oov_reproduced": pytest.approx(2 / 4),
    }
    empty = oov_reproduction(["a"], ["tea"], ["tea"], vocabulary)
    assert empty["reference_oov_words"] == 0 and empty["oov_reproduced"] == 0.0
    with pytest.raises(ValueError, match="sources"):
        oov_reproduction(["a", "b"], ["a"], ["a"], vocabulary)


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_split_cjk_makes_every_chinese_character_a_token(kind):
    texts = ["I love you.", "我爱你。", "Do you like tea?", "你喜欢茶吗？", "Hello, Tom!", "你好，汤姆！"] * 5
    tokenizer = train_tokenizer(texts, kind=kind, vocab_size=80, split_cjk=True)
    tokens = [token.lstrip("▁") for token in tokenizer.tokenize("你喜欢汤姆吗？") if token != "▁"]
    assert tokens == list("你喜欢汤姆吗？")  # full-width punctuation kept (NFC, not NFKC)
    assert tokenizer.unk_token_id not in tokenizer("你喜欢汤姆吗？")["input_ids"]
    decoded = tokenizer.decode(tokenizer("你喜欢汤姆吗？")["input_ids"], skip_special_tokens=True)
    assert decoded.replace(" ", "") == "你喜欢汤姆吗？"
    if kind != "word":  # subword and character decoders join Chinese characters without spaces
        assert decoded == "你喜欢汤姆吗？"
    # Without split_cjk, a subword vocabulary this small cannot hold the sentence as one piece either way, but the
    # NFKC normalisation turns the full-width question mark into ASCII.
    plain = train_tokenizer(texts, kind=kind, vocab_size=80)
    assert "？" not in "".join(plain.tokenize("你喜欢汤姆吗？"))


def test_evaluate_model_statistics_flags(tmp_path, monkeypatch):
    """evaluate_model.py with --copy_statistics, --oov_statistics and --bleu_tokenize zh on a tiny trained model."""
    rows = [{"source": f"the {w} sat on the {v} mat", "target": f"{w} {v}"} for w in "cat dog" for v in "ab"]
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    sys.path.insert(0, str(SCRIPTS))
    try:
        train = runpy.run_path(str(SCRIPTS / "train.py"), run_name="not_main")["main"]
        evaluate = runpy.run_path(str(SCRIPTS / "evaluate_model.py"), run_name="not_main")["main"]
    finally:
        sys.path.remove(str(SCRIPTS))
    model = tmp_path / "model"
    train(["--train_file", str(data), "--text_column", "source", "--summary_column", "target", "--output_dir",
           str(model), "--embedding_size", "16", "--hidden_size", "32", "--max_steps", "2", "--disable_tqdm", "true",
           "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false"])  # fmt: skip
    metrics = evaluate([str(model), "--test_file", str(data), "--text_column", "source", "--summary_column", "target",
                        "--copy_statistics", "--oov_statistics", "--bleu_tokenize", "zh", "--output_dir",
                        str(tmp_path / "eval"), "--max_new_tokens", "4", "--max_source_length", "3"])  # fmt: skip
    for key in ("bleu", "bleu_lowercase", "chrf", "rouge1", "copied_word_share", "repeated_ngram_rate",
                "reference_copied_word_share", "oov_reproduced", "sentences_per_second"):  # fmt: skip
        assert key in metrics, key
    assert metrics["reference_copied_word_share"] == 1.0 and metrics["reference_repeated_ngram_rate"] == 0.0
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text()) == metrics


def test_lead_baseline_scores_the_first_sentences_without_a_model(tmp_path, capsys):
    """evaluate_model.py --lead N: the extractive baseline, each source's first N sentences, one per line."""
    rows = [
        {"source": "Dr. Smith came home. He was tired! Then he slept. The end.", "target": "Smith came home tired."},
        {"source": "One sentence only", "target": "One sentence"},
    ]
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    sys.path.insert(0, str(SCRIPTS))
    try:
        evaluate = runpy.run_path(str(SCRIPTS / "evaluate_model.py"), run_name="not_main")["main"]
    finally:
        sys.path.remove(str(SCRIPTS))
    columns = ["--test_file", str(data), "--text_column", "source", "--summary_column", "target"]
    metrics = evaluate([*columns, "--lead", "2", "--copy_statistics", "--output_dir", str(tmp_path / "lead")])
    predictions = [json.loads(line)["prediction"] for line in open(tmp_path / "lead" / "predictions.jsonl")]
    assert predictions == ["Dr. Smith came home.\nHe was tired!", "One sentence only"]
    assert metrics["copied_word_share"] == 1.0 and metrics["novel_ngram_share"] == 0.0 and "rouge1" in metrics
    for bad, message in (
        (["model_folder", "--lead", "2"], "not both"),
        ([], "a model folder, or --lead"),
        (["--lead", "2", "--perplexity"], "no --perplexity"),
        (["--lead", "0"], "N >= 1"),
    ):
        with pytest.raises(SystemExit):
            evaluate([*columns, *bad, "--output_dir", str(tmp_path / "x")])
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate([*columns, "--lead", "2"])
    assert "needs --output_dir" in capsys.readouterr().err


@pytest.mark.slow
def test_a_recipe_runs_end_to_end_and_reports(tmp_path, monkeypatch, capsys):
    """A one-run recipe on a generated corpus in the shared-data layout: train, evaluate on validation, plot the
    attention, then `report` writes the model card (with its image) and the results table."""
    pytest.importorskip("matplotlib")
    recipes = runpy.run_path(str(SCRIPTS / "recipes" / "recipes.py"), run_name="not_main")
    corpus_dir = tmp_path / "data" / "tiny"
    corpus_dir.mkdir(parents=True)
    digits = "zero one two three four five".split()
    rows = [{"translation": {"de": f"{a} {b}", "en": f"{b} {a}"}} for a in digits for b in digits]
    for split in ("train", "validation"):
        (corpus_dir / f"{split}.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    Corpus, Run = recipes["Corpus"], recipes["Run"]
    main = recipes["main"]
    main.__globals__["CORPORA"]["tiny"] = Corpus(
        "tiny", ("--source_lang", "de", "--target_lang", "en"), "tiny", "none"
    )
    run = Run(
        "tiny-run",
        "tiny",
        [
            "--embedding_size",
            "16",
            "--hidden_size",
            "32",
            "--encoder_layers",
            "1",
            "--decoder_layers",
            "1",
            "--attention_type",
            "additive",
            "--num_train_epochs",
            "1",
            "--disable_tqdm",
            "true",
        ],
        group="tiny",
        card="tiny-card",
        summary="a tiny reversal model",
    )
    monkeypatch.setitem(main.__globals__, "RUNS", {run.name: run})
    monkeypatch.setitem(main.__globals__, "GROUPS", {"tiny"})
    output, cards = tmp_path / "runs", tmp_path / "cards"
    main(["run", "tiny", "--data_dir", str(tmp_path / "data"), "--output_root", str(output)])
    metrics = json.loads((output / "tiny-run" / "validation" / "metrics.json").read_text())
    assert {"bleu", "bleu_lowercase", "chrf"} <= set(metrics)
    assert (output / "tiny-run" / "attention.png").stat().st_size > 0
    main(["run", "tiny", "--data_dir", str(tmp_path / "data"), "--output_root", str(output)])  # done: skipped
    assert "done already" in capsys.readouterr().out
    main(["report", "--output_root", str(output), "--cards_dir", str(cards)])
    table = (cards / "README.md").read_text()
    assert "[tiny-card](tiny-card.md)" in table and f"{metrics['bleu']:.1f}" in table
    card = ModelCard.load(cards / "tiny-card.md")
    assert "images/tiny-card.png" in card.text and "## Sample outputs" in card.text
    assert (cards / "images" / "tiny-card.png").is_file()


def test_claims_skip_live_workers_take_over_dead_ones_and_are_released_on_failure(tmp_path, capsys):
    """Two workers share a queue through claims: a live worker's claim is respected, a dead worker's is taken over,
    and a run that fails gives its claim back so that it can be run again."""
    import os
    import socket
    import subprocess

    recipes = runpy.run_path(str(SCRIPTS / "recipes" / "recipes.py"), run_name="not_main")
    take_claim, execute, Run = recipes["take_claim"], recipes["execute"], recipes["Run"]
    claim = tmp_path / ".r.claimed"
    assert take_claim(claim) == ""
    assert (claim / "owner").read_text().split() == [socket.gethostname(), str(os.getpid())]
    assert take_claim(claim) == f"worker {os.getpid()} on {socket.gethostname()}"  # alive: respected

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (claim / "owner").write_text(f"{socket.gethostname()} {dead.pid}\n")
    assert take_claim(claim) == ""  # its worker is gone: taken over
    assert "is gone" in capsys.readouterr().out
    assert [path.name for path in tmp_path.iterdir()] == [".r.claimed"]

    # a corpus that is not there: the error says which file and what --data_dir must be; the claim is released
    corpus = recipes["Corpus"]("bad", ("--source_lang", "de", "--target_lang", "en"), "bad", "none")
    execute.__globals__["CORPORA"]["bad"] = corpus
    run = Run("broken", "bad", ["--max_steps", "1", "--attention_type", "none"], group="bad")
    with pytest.raises(SystemExit, match=r"train\.jsonl does not exist: --data_dir"):
        execute(run, tmp_path / "data", tmp_path, dry_run=False, force=False)
    assert not (tmp_path / ".broken.claimed").exists()
    # a run whose training fails (an empty corpus): the error names the log, and the claim is released
    (tmp_path / "data" / "bad").mkdir(parents=True)
    for split in ("train", "validation"):
        (tmp_path / "data" / "bad" / f"{split}.jsonl").write_text("")
    with pytest.raises(SystemExit, match=r"failed .* see .*recipe\.log"):
        execute(run, tmp_path / "data", tmp_path, dry_run=False, force=False)
    assert not (tmp_path / ".broken.claimed").exists()
    assert not (tmp_path / "broken" / "recipe.json").exists()


def test_word2vec_vectors_for_the_ablation_fill_the_embeddings(tmp_path):
    """The pretrained-embeddings row: word2vec (gensim) on the training split in the run's own subword tokens."""
    pytest.importorskip("gensim")
    from transformers import AutoTokenizer

    from hf_rnn_seq2seq import RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration
    from hf_rnn_seq2seq.tokenization_rnn_seq2seq import load_pretrained_embeddings

    recipes = runpy.run_path(str(SCRIPTS / "recipes" / "recipes.py"), run_name="not_main")
    corpus_dir = tmp_path / "tiny"
    corpus_dir.mkdir()
    rows = [{"translation": {"de": f"ein {w} hund", "en": f"a {w} dog"}} for w in ("roter", "blauer", "kleiner")]
    (corpus_dir / "train.jsonl").write_text("\n".join(json.dumps(row) for row in rows * 5) + "\n")
    word2vec = recipes["word2vec_embeddings"]
    word2vec.__globals__["CORPORA"]["tiny"] = recipes["Corpus"](
        "tiny", ("--source_lang", "de", "--target_lang", "en"), "", ""
    )
    run = recipes["Run"]("w2v", "tiny", [])
    arguments = word2vec(run, tmp_path, tmp_path / "out")
    tokenizer = AutoTokenizer.from_pretrained(arguments[arguments.index("--tokenizer_name") + 1])
    vectors = Path(arguments[arguments.index("--pretrained_embeddings") + 1])
    count, size = map(int, vectors.read_text().splitlines()[0].split())
    assert size == 256 and count > 0
    model = RNNSeq2SeqForConditionalGeneration(
        RNNSeq2SeqConfig(
            vocab_size=len(tokenizer), embedding_size=256, hidden_size=32, encoder_layers=1, decoder_layers=1
        )
    )
    found = load_pretrained_embeddings(model, tokenizer, vectors)
    # Every token the training split is written in has a vector (min_count=1).
    used = {token for row in rows for text in row["translation"].values() for token in tokenizer.tokenize(text)}
    assert found["matched"] >= len(used) and found["vectors"] == count


@pytest.mark.parametrize("copy", [False, True], ids=["plain", "copy-extended"])
def test_reference_likelihood_is_the_models_token_mean_loss(copy):
    """evaluate_model.py --perplexity: over batches, the token-weighted mean of what the model's own loss is on one
    batch (no label smoothing, no coverage)."""
    import torch
    from transformers import DataCollatorForSeq2Seq

    from hf_rnn_seq2seq import (
        DataCollatorForCopySeq2Seq,
        RNNSeq2SeqConfig,
        RNNSeq2SeqForConditionalGeneration,
        prepare_copy_inputs,
    )

    sys.path.insert(0, str(SCRIPTS))
    try:
        likelihood = runpy.run_path(str(SCRIPTS / "evaluate_model.py"), run_name="not_main")["reference_likelihood"]
    finally:
        sys.path.remove(str(SCRIPTS))
    sources = ["ein roter hund", "ein hund", "zwei blaue katzen und ein Zorbu", "katzen"]
    references = ["a red dog", "a dog", "two blue cats and a Zorbu", "cats"]
    tokenizer = train_tokenizer(sources[:2] + references[:2], kind="word")
    torch.manual_seed(0)
    config = RNNSeq2SeqConfig(
        vocab_size=len(tokenizer), embedding_size=8, hidden_size=16, encoder_layers=1, decoder_layers=1,
        use_copy=copy, copy_extended_vocab=copy, max_source_oovs=4,
    )  # fmt: skip
    model = RNNSeq2SeqForConditionalGeneration(config).eval()
    one_batch = likelihood(model, tokenizer, sources, references, batch_size=8)
    in_pieces = likelihood(model, tokenizer, sources, references, batch_size=3)
    assert one_batch["reference_nll"] == pytest.approx(in_pieces["reference_nll"], rel=1e-5)
    if copy:
        features = prepare_copy_inputs(tokenizer, config, sources, references)
        features.pop("source_oovs")
    else:
        features = dict(tokenizer(sources))
        features["labels"] = tokenizer(text_target=references)["input_ids"]
    collator = (DataCollatorForCopySeq2Seq if copy else DataCollatorForSeq2Seq)(tokenizer, model=model)
    batch = collator([dict(zip(features, values, strict=True)) for values in zip(*features.values(), strict=True)])
    with torch.no_grad():
        loss = model(**batch).loss.item()
    assert one_batch["reference_nll"] == pytest.approx(loss, rel=1e-5)
    assert one_batch["reference_perplexity"] == pytest.approx(math.exp(loss), rel=1e-5)


def test_recipe_names_never_shadow_a_run():
    """`run NAME` takes a recipe before a run: a recipe named like one of its runs would run them all."""
    recipes = runpy.run_path(str(SCRIPTS / "recipes" / "recipes.py"), run_name="not_main")
    for group in recipes["GROUPS"] & set(recipes["RUNS"]):
        assert [name for name, run in recipes["RUNS"].items() if run.group == group] == [group]
    assert [run.name for run in recipes["select"](["oov-copy"])] == ["oov-copy"]
