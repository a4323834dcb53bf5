# Copyright 2026 The hf-rnn-seq2seq authors. Licensed under the Apache License, Version 2.0.
"""Tokenizers for training from scratch, and pretrained word vectors for the embeddings.

`train_tokenizer` trains a `tokenizers` model (word-level, BPE, unigram or character) on the training texts and wraps
it as a `PreTrainedTokenizerFast` with the ids this package's config expects (`<pad>` 0, `<s>` 1, `</s>` 2, `<unk>`
3), ending every sequence with `</s>`; `save_pretrained` writes it so that `AutoTokenizer.from_pretrained` loads it.

`load_pretrained_embeddings` fills the embedding rows of the tokens found in a GloVe or word2vec text file.
"""

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
TOKENIZER_KINDS = ("word", "bpe", "unigram", "char")
# CJK radicals, punctuation, kana, ideographs and full-width forms: with `split_cjk` each is a token of its own.
CJK_CHARACTERS = "[\u2e80-\u2fff\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]"


def train_tokenizer(
    texts: Iterable[str],
    kind: Literal["word", "bpe", "unigram", "char"] = "word",
    vocab_size: int = 8000,
    min_frequency: int = 1,
    lowercase: bool = False,
    split_cjk: bool = False,
) -> PreTrainedTokenizerFast:
    """Trains one shared source/target tokenizer on `texts`.

    Args:
        texts: the training texts (sources and targets together, for one shared vocabulary).
        kind: `"word"` (whitespace and punctuation split, one id per word; unknown words become `<unk>`, which an
            extended copy vocabulary can copy), `"bpe"` or `"unigram"` (subwords, `vocab_size` in total, words
            rejoined on decoding), or `"char"` (one id per character, spaces kept: for Chinese and other scripts
            without spaces).
        vocab_size: the largest vocabulary, special tokens included (`word`/`bpe`/`unigram`; `char` keeps every
            character seen at least `min_frequency` times, up to this size).
        min_frequency: tokens seen fewer times are left out (and read as `<unk>`).
        lowercase: lowercase before tokenising.
        split_cjk: make every Chinese/Japanese character (and CJK punctuation) a token of its own, whatever `kind`
            does with the rest: a character-level Chinese side next to word or subword English in one vocabulary.
            The text is then normalised with NFC rather than NFKC, which would turn full-width CJK punctuation
            (`，` `？` `！`) into ASCII that the references do not have.
    """
    if kind not in TOKENIZER_KINDS:
        raise ValueError(f"Unknown tokenizer kind {kind!r}; choose one of {TOKENIZER_KINDS}.")
    specials = list(SPECIAL_TOKENS.values())
    unk = SPECIAL_TOKENS["unk_token"]
    if kind == "word":
        tokenizer = Tokenizer(models.WordLevel(unk_token=unk))
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.WordLevelTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials
        )
    elif kind == "char":
        tokenizer = Tokenizer(models.WordLevel(unk_token=unk))
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Metaspace(), pre_tokenizers.Split(Regex("."), behavior="isolated")]
        )
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.WordLevelTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials
        )
    elif kind == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token=unk))
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials)
    else:
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token=unk)
    if split_cjk:
        isolate = pre_tokenizers.Split(Regex(CJK_CHARACTERS), behavior="isolated")
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([tokenizer.pre_tokenizer, isolate])
    steps = [normalizers.NFC() if split_cjk else normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.train_from_iterator((text for text in texts if text), trainer=trainer)
    for position, token in enumerate(specials):  # the config's ids: pad 0, bos 1, eos 2, unk 3
        if tokenizer.token_to_id(token) != position:
            raise RuntimeError(f"{token} got id {tokenizer.token_to_id(token)}, expected {position}.")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 2)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)


def load_pretrained_embeddings(model, tokenizer, path: str | Path, freeze: bool = False) -> dict[str, int]:
    """Copies pretrained word vectors (GloVe or word2vec text format) into the model's embedding rows.

    Each vocabulary token is looked up as it is, then without a subword marker (`▁`), then lowercased. Rows of
    tokens not found keep their initialisation. The source embedding is filled, and the target embedding too when it
    is a separate matrix. With `freeze`, the filled embedding matrices stop training (with tied word embeddings this
    also freezes the output layer, which is the same matrix).

    Returns `{"matched": …, "vocabulary": …, "vectors": …}`: how many vocabulary rows were filled, out of how many,
    and how many vectors the file had.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Pretrained embeddings file not found: {path}")
    embeddings = model.get_input_embeddings()
    size = embeddings.weight.shape[1]
    vectors: dict[str, list[float]] = {}
    with path.open(encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            parts = line.rstrip().split(" ")
            if number == 1 and len(parts) == 2 and all(part.isdigit() for part in parts):
                continue  # word2vec header: "<count> <dimension>"
            if len(parts) < 2:
                continue
            if len(parts) - 1 != size:
                raise ValueError(
                    f"{path}, line {number}: vectors of dimension {len(parts) - 1}, but the model's embedding_size "
                    f"is {size}. Use vectors of that size or set embedding_size={len(parts) - 1}."
                )
            vectors.setdefault(parts[0], [float(value) for value in parts[1:]])
    if not vectors:
        raise ValueError(f"{path} holds no word vectors.")

    rows, values = [], []
    for token, token_id in tokenizer.get_vocab().items():
        if token in SPECIAL_TOKENS.values():
            continue
        for candidate in (token, token.lstrip("▁"), token.lstrip("▁").lower()):
            if candidate in vectors:
                rows.append(token_id)
                values.append(vectors[candidate])
                break
    targets = [embeddings]
    decoder_embeddings = model.base_model.decoder.embed_tokens
    if decoder_embeddings is not embeddings:  # share_encoder_decoder_embeddings=False
        targets.append(decoder_embeddings)
    if rows:
        index = torch.tensor(rows)
        weights = torch.tensor(values, dtype=embeddings.weight.dtype)
        with torch.no_grad():
            for target in targets:
                target.weight[index] = weights.to(target.weight.device)
    if freeze:
        for target in targets:
            target.weight.requires_grad_(False)
    return {"matched": len(rows), "vocabulary": len(tokenizer), "vectors": len(vectors)}


__all__ = ["CJK_CHARACTERS", "SPECIAL_TOKENS", "TOKENIZER_KINDS", "load_pretrained_embeddings", "train_tokenizer"]
