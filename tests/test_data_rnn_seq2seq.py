"""Extended-vocabulary data helpers: prepare_copy_inputs, DataCollatorForCopySeq2Seq and OOV-aware decoding."""

import numpy as np
import pytest
import torch
from datasets import Dataset, Features, List, Value
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import DataCollatorForSeq2Seq, PreTrainedTokenizerFast

from hf_rnn_seq2seq import RNNSeq2SeqConfig
from hf_rnn_seq2seq.data_rnn_seq2seq import (
    DataCollatorForCopySeq2Seq,
    batch_decode_keeping_unknown,
    batch_decode_with_source_oovs,
    decode_with_source_oovs,
    prepare_copy_inputs,
)

from .conftest import tiny_config, word_level_tokenizer

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
PAD, BOS, EOS, UNK = 0, 1, 2, 3
WORDS = "the a cat dog sat ran on mat and".split()
SPARE_ROWS = 3  # model rows that no token uses: ids len(tokenizer) … V − 1
V = len(SPECIALS) + len(WORDS) + SPARE_ROWS


def build_tokenizer(unk_token: str | None = "<unk>") -> PreTrainedTokenizerFast:
    return word_level_tokenizer(WORDS, unk_token)


def make_config(max_source_oovs: int = 4, **overrides) -> RNNSeq2SeqConfig:
    copy = dict(vocab_size=V, use_copy=True, copy_extended_vocab=True, max_source_oovs=max_source_oovs)
    return tiny_config(**(copy | overrides))


@pytest.fixture
def tok():
    return build_tokenizer()


@pytest.fixture
def config():
    return make_config()


SOURCES = ["the zorb sat on the mat qux", "a dog ran", "blip cat blip on zap"]
TARGETS = ["the zorb ran", "a blip ran", "zap and blip sat"]


# ----------------------------------------------------------------------------------------------------------------------
# prepare_copy_inputs
# ----------------------------------------------------------------------------------------------------------------------


def test_extended_ids_replace_exactly_the_source_oovs(tok, config):
    out = prepare_copy_inputs(tok, config, SOURCES)
    assert set(out) == {"input_ids", "attention_mask", "extended_input_ids", "source_oovs"}
    assert out["input_ids"] == tok(SOURCES)["input_ids"]
    assert out["attention_mask"] == tok(SOURCES)["attention_mask"]
    for ids, extended, oovs, text in zip(
        out["input_ids"], out["extended_input_ids"], out["source_oovs"], SOURCES, strict=True
    ):
        assert len(extended) == len(ids)
        words = [*text.split(), "</s>"]
        for token_id, extended_id, word in zip(ids, extended, words, strict=True):
            if token_id == UNK:
                assert extended_id >= V and oovs[extended_id - V] == word
            else:
                assert extended_id == token_id
        assert oovs == list(dict.fromkeys(w for w in text.split() if w not in WORDS))
    assert out["source_oovs"] == [["zorb", "qux"], [], ["blip", "zap"]]
    assert out["extended_input_ids"][0][:2] == [4, V] and out["extended_input_ids"][0][6] == V + 1


def test_repeated_oov_reuses_its_id(tok, config):
    out = prepare_copy_inputs(tok, config, "zorb the zorb qux zorb")
    assert out["extended_input_ids"] == [V, 4, V, V + 1, V, EOS]
    assert out["source_oovs"] == ["zorb", "qux"]


def test_oovs_beyond_max_source_oovs_stay_unknown(tok):
    out = prepare_copy_inputs(tok, make_config(max_source_oovs=2), "w1 the w2 w3 w1 w4 w3")
    assert out["source_oovs"] == ["w1", "w2"]
    assert out["extended_input_ids"] == [V, 4, V + 1, UNK, V, UNK, UNK, EOS]
    assert max(out["extended_input_ids"]) < V + 2


def test_literal_unk_token_in_the_source_stays_unknown(tok, config):
    out = prepare_copy_inputs(tok, config, "the <unk> zorb", "<unk> zorb")
    assert out["source_oovs"] == ["zorb"]
    assert out["extended_input_ids"] == [4, UNK, V, EOS]
    assert out["labels"] == [UNK, V, EOS]


def test_labels_use_extended_ids_only_for_words_of_their_own_source(tok, config):
    out = prepare_copy_inputs(tok, config, SOURCES, TARGETS)
    plain = tok(text_target=TARGETS)["input_ids"]
    for labels, plain_ids, oovs, target in zip(out["labels"], plain, out["source_oovs"], TARGETS, strict=True):
        assert len(labels) == len(plain_ids)
        for label, plain_id, word in zip(labels, plain_ids, [*target.split(), "</s>"], strict=True):
            if word in oovs:
                assert label == V + oovs.index(word)
            else:
                assert label == plain_id
    # "blip" is an OOV of source 2 (with the id V) but not of source 1: there it stays unknown.
    assert out["labels"] == [[4, V, 9, EOS], [5, UNK, 9, EOS], [V + 1, 12, V, 8, EOS]]


def test_unbatched_matches_batched(tok, config):
    single = prepare_copy_inputs(tok, config, SOURCES[2], TARGETS[2])
    batched = prepare_copy_inputs(tok, config, [SOURCES[2]], [TARGETS[2]])
    assert single == {key: value[0] for key, value in batched.items()}
    assert isinstance(single["input_ids"][0], int) and isinstance(single["source_oovs"][0], str)
    assert "labels" not in prepare_copy_inputs(tok, config, SOURCES[2])
    assert type(single) is dict


def test_empty_batch(tok, config):
    out = prepare_copy_inputs(tok, config, [], [])
    assert all(value == [] for value in out.values())
    assert {"input_ids", "extended_input_ids", "source_oovs", "labels"} <= set(out)


def test_truncation_drops_oovs_that_are_cut_off(tok, config):
    out = prepare_copy_inputs(tok, config, "the cat zorb", "zorb cat the mat", max_length=3, max_target_length=5)
    assert out["input_ids"] == [4, 6, EOS]
    assert out["source_oovs"] == [] and out["extended_input_ids"] == out["input_ids"]
    assert out["labels"] == [UNK, 6, 4, 11, EOS]  # "zorb" was cut off the source: nothing to copy
    # max_target_length defaults to max_length, as tokenizer(src, text_target=tgt, max_length=...) does
    assert prepare_copy_inputs(tok, config, "zorb", "zorb cat the mat", max_length=3)["labels"] == [V, 6, EOS]
    assert len(prepare_copy_inputs(tok, config, "zorb", "a " * 50, truncation=False)["labels"]) == 51


def test_dataset_map_batched(tok, config):
    dataset = Dataset.from_dict({"src": SOURCES * 2, "tgt": TARGETS * 2})
    mapped = dataset.map(
        lambda batch: prepare_copy_inputs(tok, config, batch["src"], batch["tgt"]),
        batched=True,
        batch_size=4,
        remove_columns=["src", "tgt"],
    )
    direct = prepare_copy_inputs(tok, config, SOURCES * 2, TARGETS * 2)
    assert mapped.column_names == list(direct)
    assert mapped.to_dict() == direct


def test_dataset_map_with_an_oov_free_first_batch_needs_features(tok, config):
    """The pitfall documented in prepare_copy_inputs, and its documented fix."""
    dataset = Dataset.from_dict({"src": ["the cat", "a dog", "zorb sat"], "tgt": ["cat", "dog", "zorb"]})
    features = Features(
        {
            "input_ids": List(Value("int64")),
            "attention_mask": List(Value("int64")),
            "extended_input_ids": List(Value("int64")),
            "source_oovs": List(Value("string")),
            "labels": List(Value("int64")),
        }
    )
    mapped = dataset.map(
        lambda batch: prepare_copy_inputs(tok, config, batch["src"], batch["tgt"]),
        batched=True,
        batch_size=2,
        remove_columns=dataset.column_names,
        features=features,
    )
    assert mapped["source_oovs"] == [[], [], ["zorb"]]
    assert mapped[2]["labels"] == [V, EOS]


def test_wordpiece_tokenizer_with_unk():
    """Offsets give the whole unknown word; two spellings the normaliser merges are one OOV."""
    vocab = {
        t: i for i, t in enumerate(["[PAD]", "[CLS]", "[SEP]", "[UNK]", "the", "cat", "##s", "play", "##ing", "."])
    }
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(single="$A [SEP]", special_tokens=[("[SEP]", 2)])
    backend.decoder = decoders.WordPiece()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", bos_token="[CLS]", eos_token="[SEP]", unk_token="[UNK]"
    )
    config = make_config(vocab_size=16)
    out = prepare_copy_inputs(tokenizer, config, "The Zorblax cats playing zorblax. Quux", "the zorblax cats quux.")
    assert out["source_oovs"] == ["Zorblax", "Quux"]
    assert out["extended_input_ids"] == [4, 16, 5, 6, 7, 8, 16, 9, 17, 2]
    assert out["labels"] == [4, 16, 5, 6, 17, 9, 2]
    text = decode_with_source_oovs(tokenizer, out["labels"], out["source_oovs"], config.vocab_size)
    assert text == "the Zorblax cats Quux."


def test_bpe_tokenizer_with_unk():
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "a": 4, "b": 5, "c": 6, "ab": 7}
    backend = Tokenizer(models.BPE(vocab, [("a", "b")], unk_token="<unk>", fuse_unk=True))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    config = make_config(vocab_size=10)
    out = prepare_copy_inputs(tokenizer, config, "ab xyz c", "xyz c q")
    assert out["source_oovs"] == ["xyz"]
    assert out["extended_input_ids"] == [7, 10, 6]
    assert out["labels"] == [10, 6, UNK]
    assert decode_with_source_oovs(tokenizer, out["labels"], out["source_oovs"], 10) == "xyz c <unk>"


class SlowTokenizer:
    is_fast = False
    unk_token, unk_token_id = "<unk>", UNK

    def __len__(self):
        return 10


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: (SlowTokenizer(), make_config()), TypeError, "fast tokenizer"),
        (
            lambda: (build_tokenizer(), make_config(use_copy=False, copy_extended_vocab=False)),
            ValueError,
            "copy_extended_vocab=True",
        ),
        (
            lambda: (build_tokenizer(), make_config(copy_extended_vocab=False)),
            ValueError,
            "copy_extended_vocab=True",
        ),
        (lambda: (build_tokenizer(unk_token=None), make_config()), ValueError, "no unknown token"),
        (lambda: (build_tokenizer(), make_config(unk_token_id=5)), ValueError, "unk_token_id"),
        (lambda: (build_tokenizer(), make_config(vocab_size=V - SPARE_ROWS - 1)), ValueError, "vocab_size"),
    ],
    ids=["slow-tokenizer", "no-copy", "no-extended-vocab", "no-unk", "unk-mismatch", "tokenizer-too-large"],
)
def test_prepare_rejects_bad_tokenizer_or_config(make, error, match):
    tokenizer, config = make()
    with pytest.raises(error, match=match):
        prepare_copy_inputs(tokenizer, config, ["the cat"])


@pytest.mark.parametrize(
    ("sources", "targets", "error", "match"),
    [
        (["the", "cat"], ["the"], ValueError, "same number"),
        ("the", ["the"], ValueError, "same number"),
        (["the"], "the", ValueError, "same number"),
        (["the", 3], None, TypeError, "element 1 is a int"),
        (3, None, TypeError, "string or a list of strings"),
        (["the"], [None], TypeError, "`targets`"),
    ],
)
def test_prepare_rejects_bad_texts(tok, config, sources, targets, error, match):
    with pytest.raises(error, match=match):
        prepare_copy_inputs(tok, config, sources, targets)


# ----------------------------------------------------------------------------------------------------------------------
# DataCollatorForCopySeq2Seq
# ----------------------------------------------------------------------------------------------------------------------


def features_of(tok, config, sources=SOURCES, targets=TARGETS):
    out = prepare_copy_inputs(tok, config, sources, targets)
    return [{key: out[key][i] for key in out} for i in range(len(sources))]


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_collator_pads_extended_ids_like_input_ids(tok, config, padding_side):
    tok.padding_side = padding_side
    features = features_of(tok, config)
    batch = DataCollatorForCopySeq2Seq(tok)(features)
    assert "source_oovs" not in batch
    assert batch["extended_input_ids"].dtype == torch.long and batch["labels"].dtype == torch.long
    assert batch["extended_input_ids"].shape == batch["input_ids"].shape == (3, 8)
    mask = batch["attention_mask"].bool()
    assert torch.equal(batch["extended_input_ids"][~mask], torch.full(((~mask).sum(),), PAD))
    assert torch.equal(batch["extended_input_ids"] < V, batch["extended_input_ids"] == batch["input_ids"])
    for i, feature in enumerate(features):
        assert batch["extended_input_ids"][i][mask[i]].tolist() == feature["extended_input_ids"]
        n = len(feature["extended_input_ids"])
        kept = slice(0, n) if padding_side == "right" else slice(8 - n, 8)
        assert mask[i, kept].all() and mask[i].sum() == n
        labels = batch["labels"][i].tolist()
        pad = [-100] * (5 - len(feature["labels"]))
        assert labels == (feature["labels"] + pad if padding_side == "right" else pad + feature["labels"])
    assert "extended_input_ids" in features[0] and "source_oovs" in features[0]  # the caller's rows are untouched


def test_collator_pad_to_multiple_of_and_max_length(tok, config):
    features = features_of(tok, config)
    batch = DataCollatorForCopySeq2Seq(tok, pad_to_multiple_of=3)(features)
    assert batch["extended_input_ids"].shape == batch["input_ids"].shape == (3, 9)
    assert batch["labels"].shape == (3, 6)
    assert (batch["labels"][:, -1] == -100).all()
    batch = DataCollatorForCopySeq2Seq(tok, padding="max_length", max_length=12)(features)
    assert batch["extended_input_ids"].shape == batch["input_ids"].shape == (3, 12)


def test_collator_numpy_and_unsupported_tensors(tok, config):
    features = features_of(tok, config)
    batch = DataCollatorForCopySeq2Seq(tok, return_tensors="np")(features)
    assert isinstance(batch["extended_input_ids"], np.ndarray) and batch["extended_input_ids"].dtype == np.int64
    assert batch["extended_input_ids"].shape == batch["input_ids"].shape
    torch_batch = DataCollatorForCopySeq2Seq(tok)(features)
    assert np.array_equal(batch["extended_input_ids"], torch_batch["extended_input_ids"].numpy())
    with pytest.raises(ValueError, match="return_tensors"):
        DataCollatorForCopySeq2Seq(tok)(features, return_tensors="tf")


def test_collator_without_extended_ids_is_the_parent(tok, config):
    plain = [{"input_ids": f["input_ids"], "labels": f["labels"]} for f in features_of(tok, config)]
    ours = DataCollatorForCopySeq2Seq(tok, pad_to_multiple_of=4)(plain)
    parent = DataCollatorForSeq2Seq(tok, pad_to_multiple_of=4)(plain)
    assert set(ours) == set(parent) and "extended_input_ids" not in ours
    assert all(torch.equal(ours[key], parent[key]) for key in parent)
    # source_oovs alone (no extended ids) is dropped too
    with_oovs = DataCollatorForCopySeq2Seq(tok, pad_to_multiple_of=4)([{**f, "source_oovs": ["x"]} for f in plain])
    assert set(with_oovs) == set(parent) and all(torch.equal(with_oovs[key], parent[key]) for key in parent)


def test_collator_with_a_model_and_dataset_rows(tok, config):
    class StubModel:
        def prepare_decoder_input_ids_from_labels(self, labels):
            return torch.where(labels == -100, PAD, labels)

    dataset = Dataset.from_dict(prepare_copy_inputs(tok, config, SOURCES, TARGETS))
    rows = [dataset[i] for i in range(len(dataset))]
    batch = DataCollatorForCopySeq2Seq(tok, model=StubModel())(rows)
    assert torch.equal(batch["decoder_input_ids"], batch["labels"].clamp(min=0))
    numpy_rows = [dataset.with_format("numpy", columns=["input_ids", "extended_input_ids"])[i] for i in range(3)]
    numpy_batch = DataCollatorForCopySeq2Seq(tok)(numpy_rows)
    assert torch.equal(numpy_batch["extended_input_ids"], batch["extended_input_ids"])


def test_collator_errors(tok, config):
    features = features_of(tok, config)
    collator = DataCollatorForCopySeq2Seq(tok)
    with pytest.raises(ValueError, match="all one or all the other"):
        collator([features[0], {"input_ids": features[1]["input_ids"]}])
    with pytest.raises(ValueError, match="position by position"):
        collator([{**features[0], "extended_input_ids": features[0]["extended_input_ids"][:-1]}])
    tok.pad_token = None
    with pytest.raises(ValueError, match="pad token"):
        collator(features)


# ----------------------------------------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------------------------------------


def test_round_trip_prepare_collate_decode(tok, config):
    out = prepare_copy_inputs(tok, config, SOURCES, TARGETS)
    texts = batch_decode_with_source_oovs(tok, out["labels"], out["source_oovs"], V)
    # "blip" of target 1 is not in source 1: it comes back as unknown; every other word, OOVs included, comes back
    assert texts == ["the zorb ran", "a <unk> ran", "zap and blip sat"]
    padded = DataCollatorForCopySeq2Seq(tok)(features_of(tok, config))["labels"]  # -100 padding, as a tensor
    assert (padded == -100).any()
    assert batch_decode_with_source_oovs(tok, padded, out["source_oovs"], V) == texts
    assert batch_decode_with_source_oovs(tok, padded.numpy(), out["source_oovs"], V) == texts
    assert [
        decode_with_source_oovs(tok, row, oovs, V) for row, oovs in zip(padded, out["source_oovs"], strict=True)
    ] == texts


def test_decode_matches_tokenizer_decode_on_plain_ids(tok):
    ids = [4, 6, 8, 0, 2, 0]
    assert decode_with_source_oovs(tok, ids, [], V) == tok.decode(ids, skip_special_tokens=True) == "the cat sat"
    assert decode_with_source_oovs(tok, ids, [], V, skip_special_tokens=False) == tok.decode(ids)


def test_plain_decoding_keeps_the_unknown_token_like_copy_decoding(tok):
    """Outputs of models with and without copy are decoded by one rule: specials dropped, `<unk>` kept."""
    rows = [[BOS, 4, UNK, 8, EOS, PAD], [5, 7, EOS, PAD, PAD, PAD]]
    plain = batch_decode_keeping_unknown(tok, torch.tensor(rows))
    assert plain == ["the <unk> sat", "a dog"] == batch_decode_with_source_oovs(tok, rows, [[], []], V)
    assert tok.batch_decode(rows, skip_special_tokens=True)[0] == "the sat"  # what it replaces: the miss hidden
    assert batch_decode_keeping_unknown(tok, rows, skip_special_tokens=False) == tok.batch_decode(rows)


def test_decode_special_cases(tok):
    oovs = ["zorb"]
    size = len(tok)
    # unknown slot past this example's OOVs, and model rows no token uses, are unknown (kept when skipping specials)
    assert decode_with_source_oovs(tok, [V, V + 1, size, V - 1, UNK, EOS], oovs, V) == "zorb <unk> <unk> <unk> <unk>"
    assert decode_with_source_oovs(tok, torch.tensor([-100, 4, V, -100]), oovs, V) == "the zorb"
    assert decode_with_source_oovs(tok, np.array([4, V, EOS, PAD]), oovs, V, skip_special_tokens=False) == (
        "the zorb </s> <pad>"
    )
    assert decode_with_source_oovs(tok, [], oovs, V) == ""


def test_decode_errors(tok):
    with pytest.raises(ValueError, match="only -100"):
        decode_with_source_oovs(tok, [4, -1], [], V)
    with pytest.raises(ValueError, match="nested"):
        decode_with_source_oovs(tok, [[4, 5]], [], V)
    with pytest.raises(TypeError, match="batch_decode_with_source_oovs"):
        decode_with_source_oovs(tok, [4], [["zorb"]], V)
    with pytest.raises(TypeError, match="list of strings"):
        decode_with_source_oovs(tok, [4], "zorb", V)
    with pytest.raises(ValueError, match="smaller than the tokenizer"):
        decode_with_source_oovs(tok, [4], [], len(tok) - 1)
    with pytest.raises(ValueError, match="2 sequences but 1 source_oovs"):
        batch_decode_with_source_oovs(tok, [[4], [5]], [[]], V)
    with pytest.raises(TypeError, match=r"source_oovs\[0\]"):
        batch_decode_with_source_oovs(tok, [[4]], [[3]], V)
