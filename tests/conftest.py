"""Shared fixtures: tiny configs, generated batches, one thread (LSTMs on 2 cores oversubscribe badly otherwise)."""

import itertools
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

import hf_rnn_seq2seq  # noqa: F401  (registers the Auto classes)
from hf_rnn_seq2seq import RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration

torch.set_num_threads(1)

VOCAB = 23
PAD, BOS, EOS, UNK = 0, 1, 2, 3


def tiny_config(**overrides) -> RNNSeq2SeqConfig:
    kwargs = dict(
        vocab_size=VOCAB,
        embedding_size=8,
        hidden_size=12,
        encoder_layers=1,
        decoder_layers=1,
        dropout=0.0,
    )
    kwargs.update(overrides)
    return RNNSeq2SeqConfig(**kwargs)


def word_level_tokenizer(words, unk_token: str | None = "<unk>") -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer: ids 0–3 are <pad> <s> </s> <unk>, then `words`; sequences end with </s>."""
    vocab = {token: i for i, token in enumerate(["<pad>", "<s>", "</s>", "<unk>", *words])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", EOS)])
    specials = dict(pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    if unk_token is not None:
        specials["unk_token"] = unk_token
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **specials)


def tiny_model(seed: int = 0, **overrides) -> RNNSeq2SeqForConditionalGeneration:
    torch.manual_seed(seed)
    return RNNSeq2SeqForConditionalGeneration(tiny_config(**overrides)).eval()


def _grid():
    """Every valid combination of the architectural switches, with a readable id."""
    params = []
    for cell, bi, attn, feed, layers, tie in itertools.product(
        ["lstm", "gru"], [True, False], ["none", "dot", "general", "additive"], [True, False], [1, 2], [True, False]
    ):
        if attn == "none" and feed:
            continue
        kw = dict(
            cell_type=cell,
            bidirectional_encoder=bi,
            attention_type=attn,
            input_feeding=feed,
            encoder_layers=layers,
            decoder_layers=3 - layers,  # also covers encoder/decoder depth mismatch
            tie_word_embeddings=tie,
            bridge="last" if attn == "none" else "dense",
        )
        ident = f"{cell}-{'bi' if bi else 'uni'}-{attn}-{'feed' if feed else 'nofeed'}-E{layers}D{3 - layers}-{'tied' if tie else 'untied'}"
        params.append(pytest.param(kw, id=ident))
    return params


CONFIG_GRID = _grid()
# A smaller grid for the slower generate() checks: every value of every switch appears at least once.
SMALL_GRID = [
    pytest.param(dict(), id="default"),
    pytest.param(dict(cell_type="gru", bidirectional_encoder=False, bridge="last"), id="gru-uni-last"),
    pytest.param(dict(attention_type="additive", input_feeding=False, decoder_layers=2), id="additive-nofeed-D2"),
    pytest.param(
        dict(attention_type="dot", encoder_layers=2, bridge="zeros", tie_word_embeddings=False),
        id="dot-E2-zeros-untied",
    ),
    pytest.param(
        dict(attention_type="none", input_feeding=False, share_encoder_decoder_embeddings=False), id="none-unshared"
    ),
]


def make_batch(batch_size=3, source_length=7, target_length=5, seed=1, padding_side="right"):
    """Random source/target ids (no special tokens inside), with variable-length padded sources."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(4, VOCAB, (batch_size, source_length), generator=g)
    lengths = torch.randint(2, source_length + 1, (batch_size,), generator=g)
    lengths[0] = source_length
    positions = torch.arange(source_length)
    if padding_side == "right":
        mask = (positions[None, :] < lengths[:, None]).long()
    else:
        mask = (positions[None, :] >= source_length - lengths[:, None]).long()
    input_ids = input_ids.masked_fill(mask == 0, PAD)
    labels = torch.randint(4, VOCAB, (batch_size, target_length), generator=g)
    labels[:, -1] = EOS
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


@pytest.fixture
def batch():
    return make_batch()


K = 3  # extended copy ids per example in the tests (`max_source_oovs`)
COPY_MODES = {
    "copy": dict(use_copy=True),
    "copyext": dict(use_copy=True, copy_extended_vocab=True, max_source_oovs=K),
    "coverage": dict(use_coverage=True),
    "copyext-coverage": dict(use_copy=True, copy_extended_vocab=True, max_source_oovs=K, use_coverage=True),
}


def _copy_grid():
    """Every copy/coverage mode with every attention type, with and without input feeding (plus GRU, 2 layers)."""
    params = []
    for (mode, kw), attn, feed in itertools.product(COPY_MODES.items(), ["dot", "general", "additive"], [True, False]):
        extra = dict(cell_type="gru", decoder_layers=2) if (attn == "general" and not feed) else {}
        ident = f"{mode}-{attn}-{'feed' if feed else 'nofeed'}" + ("-gru-D2" if extra else "")
        params.append(pytest.param(dict(kw, attention_type=attn, input_feeding=feed, **extra), id=ident))
    return params


COPY_GRID = _copy_grid()


def make_copy_batch(batch_size=3, source_length=7, target_length=5, seed=1, padding_side="right"):
    """`make_batch` plus source OOVs: in each row 1–2 real source tokens become UNK in `input_ids` and get extended ids
    (one word twice in row 0, so a repeated OOV shares its id) in `extended_input_ids`; some labels copy them."""
    batch = make_batch(batch_size, source_length, target_length, seed, padding_side)
    input_ids, mask = batch["input_ids"], batch["attention_mask"].bool()
    extended = input_ids.clone()
    labels = batch["labels"].clone()
    for row in range(batch_size):
        real = mask[row].nonzero().flatten().tolist()
        oov_positions = [real[0], real[-1]] if len(real) > 1 else real
        for slot, position in enumerate(oov_positions):
            extended[row, position] = VOCAB + (0 if row == 0 else slot)
        labels[row, 0] = VOCAB  # the first OOV, copied
    input_ids = torch.where(extended >= VOCAB, UNK, extended)
    return {
        "input_ids": input_ids,
        "attention_mask": batch["attention_mask"],
        "extended_input_ids": extended,
        "labels": labels,
    }


# Prepended to code run with `python -c` in a fresh interpreter: as if hf_rnn_seq2seq were not installed (a user who
# has only transformers), and proof that it is not importable there.
WITHOUT_PACKAGE = """
import importlib.abc, sys

class NoPackage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "hf_rnn_seq2seq":
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, NoPackage())
try:
    import hf_rnn_seq2seq  # noqa: F401
    raise SystemExit("hf_rnn_seq2seq is importable: the test would prove nothing")
except ModuleNotFoundError:
    pass
"""
