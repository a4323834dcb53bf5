"""Tokenizers trained from scratch, pretrained word vectors, and the built-in generated tasks."""

import pytest
import torch
from transformers import AutoTokenizer

from hf_rnn_seq2seq.tasks_rnn_seq2seq import load_text_pairs, make_task
from hf_rnn_seq2seq.tokenization_rnn_seq2seq import TOKENIZER_KINDS, load_pretrained_embeddings, train_tokenizer

from .conftest import tiny_model

TEXTS = ["the cat sat on the mat", "a dog ran", "七 零 三", "一 二 三 四", "the dog sat"] * 5


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_trained_tokenizer_round_trips_and_reloads_with_auto_tokenizer(kind, tmp_path):
    tokenizer = train_tokenizer(TEXTS, kind=kind, vocab_size=60)
    assert [tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id] == [
        0,
        1,
        2,
        3,
    ]
    for text in ("the cat sat on the mat", "七 零 三"):
        ids = tokenizer(text)["input_ids"]
        assert ids[-1] == tokenizer.eos_token_id and tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids, skip_special_tokens=True) == text
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded("a dog ran")["input_ids"] == tokenizer("a dog ran")["input_ids"]


def test_word_tokenizer_reads_unseen_words_as_unk():
    tokenizer = train_tokenizer(TEXTS, kind="word")
    assert tokenizer("the zebra")["input_ids"][1] == tokenizer.unk_token_id


def test_pretrained_embeddings_fill_matching_rows_and_can_freeze(tmp_path):
    tokenizer = train_tokenizer(TEXTS, kind="word")
    model = tiny_model(vocab_size=len(tokenizer), embedding_size=4)
    path = tmp_path / "glove.txt"
    path.write_text("cat 1 2 3 4\nDOG 5 6 7 8\nzebra 0 0 0 0\n")
    report = load_pretrained_embeddings(model, tokenizer, path, freeze=True)
    assert report == {"matched": 1, "vocabulary": len(tokenizer), "vectors": 3}  # "DOG" is not "dog"
    row = model.get_input_embeddings().weight[tokenizer.convert_tokens_to_ids("cat")]
    assert torch.equal(row, torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert not model.get_input_embeddings().weight.requires_grad
    path.write_text("cat 1 2 3\n")
    with pytest.raises(ValueError, match="dimension 3"):
        load_pretrained_embeddings(model, tokenizer, path)
    with pytest.raises(FileNotFoundError):
        load_pretrained_embeddings(model, tokenizer, tmp_path / "missing.txt")


def test_unshared_decoder_embeddings_get_the_vectors_too(tmp_path):
    tokenizer = train_tokenizer(TEXTS, kind="word")
    model = tiny_model(vocab_size=len(tokenizer), embedding_size=4, share_encoder_decoder_embeddings=False)
    path = tmp_path / "w2v.txt"
    path.write_text("1 4\ncat 1 2 3 4\n")
    assert load_pretrained_embeddings(model, tokenizer, path)["matched"] == 1
    row = tokenizer.convert_tokens_to_ids("cat")
    assert torch.equal(model.model.decoder.embed_tokens.weight[row], torch.tensor([1.0, 2.0, 3.0, 4.0]))


@pytest.mark.parametrize("name", ["numbers", "names"])
def test_built_in_tasks_are_reproducible_and_splits_disjoint(name):
    first, again = make_task(name, seed=3, sizes=(50, 10, 10)), make_task(name, seed=3, sizes=(50, 10, 10))
    assert first["train"].to_list() == again["train"].to_list()
    sources = [
        {next(iter(pair["translation"].values())) for pair in first[split]}
        for split in ("train", "validation", "test")
    ]
    assert not (sources[0] & sources[1]) and not (sources[0] & sources[2]) and not (sources[1] & sources[2])
    with pytest.raises(ValueError, match="Unknown built-in task"):
        make_task("nope")


def test_load_text_pairs_flattens_the_translation_layout():
    raw, source, target = load_text_pairs(task="numbers")
    assert (source, target) == ("en", "zh") and raw["train"].column_names == ["en", "zh"]
    english = raw["test"][0]["en"].split()
    assert len(english) == len(raw["test"][0]["zh"].split())
