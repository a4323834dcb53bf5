# Copyright 2026 The hf-rnn-seq2seq authors. Licensed under the Apache License, Version 2.0.
"""Data helpers for the pointer-generator's extended vocabulary (`use_copy=True, copy_extended_vocab=True`).

With the extended vocabulary (See et al. 2017), source words that the tokenizer reads as unknown get temporary
per-example ids `vocab_size, vocab_size + 1, …` so that the model can copy words it has never seen. Three pieces are
needed around the model, and this module provides them:

- [`prepare_copy_inputs`] tokenises sources (and targets) and adds `extended_input_ids`, the per-example list of
  source OOV words `source_oovs`, and `labels` that use the extended ids;
- [`DataCollatorForCopySeq2Seq`] pads `extended_input_ids` alongside `input_ids` (and `labels`, as
  [`~transformers.DataCollatorForSeq2Seq`] does);
- [`decode_with_source_oovs`] / [`batch_decode_with_source_oovs`] turn generated ids, extended ones included, back
  into text (`tokenizer.decode` silently drops ids it does not know).

Example:

```python
>>> from hf_rnn_seq2seq.data_rnn_seq2seq import (
...     DataCollatorForCopySeq2Seq,
...     batch_decode_with_source_oovs,
...     prepare_copy_inputs,
... )
>>> train = raw.map(lambda b: prepare_copy_inputs(tokenizer, config, b["src"], b["tgt"]), batched=True)
>>> collator = DataCollatorForCopySeq2Seq(tokenizer, model=model)
>>> # after generation on rows `i0:i1` of the dataset:
>>> texts = batch_decode_with_source_oovs(tokenizer, generated, train[i0:i1]["source_oovs"], config.vocab_size)
```
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from transformers import DataCollatorForSeq2Seq, PreTrainedTokenizerBase

from .configuration_rnn_seq2seq import RNNSeq2SeqConfig

__all__ = [
    "DataCollatorForCopySeq2Seq",
    "batch_decode_keeping_unknown",
    "batch_decode_with_source_oovs",
    "decode_with_source_oovs",
    "prepare_copy_inputs",
]

LABEL_PAD_TOKEN_ID = -100


# ----------------------------------------------------------------------------------------------------------------------
# Preparing inputs
# ----------------------------------------------------------------------------------------------------------------------


def _check_texts(texts: Any, name: str) -> tuple[list[str], bool]:
    """Returns `(texts as a list, whether a single string was given)`; raises `TypeError` for anything else."""
    if isinstance(texts, str):
        return [texts], True
    if isinstance(texts, Sequence):  # lists, tuples, and the columns `datasets.Dataset.map(batched=True)` passes
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(
                    f"`{name}` must be a string or a list of strings, but element {i} is a {type(text).__name__} "
                    f"({text!r})."
                )
        return texts, False
    raise TypeError(f"`{name}` must be a string or a list of strings, got a {type(texts).__name__}.")


def _describe(texts: list[str], single: bool) -> str:
    return "a single string" if single else f"a list of {len(texts)}"


def _check_tokenizer_and_config(tokenizer: PreTrainedTokenizerBase, config: RNNSeq2SeqConfig) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(
            "prepare_copy_inputs needs a fast tokenizer (a `PreTrainedTokenizerFast` backed by the `tokenizers` "
            f"library): it finds the text of unknown source words through `return_offsets_mapping=True`, which "
            f"{type(tokenizer).__name__} does not support."
        )
    if not (getattr(config, "use_copy", False) and getattr(config, "copy_extended_vocab", False)):
        raise ValueError(
            "prepare_copy_inputs is for the copy mechanism's extended vocabulary, which needs `use_copy=True` and "
            f"`copy_extended_vocab=True` in the config (got use_copy={getattr(config, 'use_copy', None)}, "
            f"copy_extended_vocab={getattr(config, 'copy_extended_vocab', None)}). Without it, tokenise with the "
            "tokenizer alone."
        )
    if tokenizer.unk_token is None or tokenizer.unk_token_id is None:
        raise ValueError(
            "The tokenizer has no unknown token (`unk_token`), so no source word can be out of its vocabulary and "
            "the extended vocabulary has nothing to do. Set `unk_token` on a tokenizer whose model emits it."
        )
    if tokenizer.unk_token_id != config.unk_token_id:
        raise ValueError(
            f"The tokenizer's unk_token_id ({tokenizer.unk_token_id}, {tokenizer.unk_token!r}) differs from the "
            f"config's unk_token_id ({config.unk_token_id}): the model would not recognise the unknown source tokens."
        )
    if len(tokenizer) > config.vocab_size:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} tokens (added tokens included) but config.vocab_size is "
            f"{config.vocab_size}: ids from {config.vocab_size} up are the extended (per-example OOV) ids, so every "
            "tokenizer id must be below vocab_size."
        )


def _normalize(tokenizer: PreTrainedTokenizerBase, text: str) -> str:
    """The key under which two spans count as the same word: the text as the tokenizer's normalizer sees it."""
    normalizer = tokenizer.backend_tokenizer.normalizer
    return normalizer.normalize_str(text) if normalizer is not None else text


def prepare_copy_inputs(
    tokenizer: PreTrainedTokenizerBase,
    config: RNNSeq2SeqConfig,
    sources: str | list[str],
    targets: str | list[str] | None = None,
    *,
    max_length: int | None = None,
    max_target_length: int | None = None,
    truncation: bool | str = True,
) -> dict[str, list]:
    r"""
    Tokenises sources (and targets) for a model with the copy mechanism's extended vocabulary
    (`config.use_copy=True, config.copy_extended_vocab=True`, See et al. 2017).

    Every source token that the tokenizer reads as unknown (`unk_token_id`) gets a temporary id of its example:
    the first distinct unknown word gets `config.vocab_size`, the next distinct one `config.vocab_size + 1`, and so
    on; a repeated word reuses its id, and words beyond the first `config.max_source_oovs` distinct ones stay unknown.
    Two spans are the same word when their texts are equal after the tokenizer's normalizer (if it has one), so an
    uncased tokenizer treats `"Zorb"` and `"zorb"` as one word; the text kept in `source_oovs` is the first one seen.
    A target token that the tokenizer reads as unknown gets the extended id of the source word with the same text, if
    its source has one; other unknown target words stay `unk_token_id`.

    The text of an unknown token is found through its character offsets (`return_offsets_mapping=True`), so this
    works with any fast tokenizer whose model emits an unknown token: word-level, and BPE or WordPiece with
    `unk_token`. With WordPiece a word that cannot be split is one unknown token (the whole word); with BPE each
    unknown piece (a character, or a run of them with `fuse_unk=True`) is a separate "word". A literal `unk_token`
    in the text (e.g. `"<unk>"`) stays unknown.

    It works on one example (strings in, flat lists out, as the tokenizer does) or on a batch (lists in, lists of
    lists out), so it can be used as is in `datasets.Dataset.map`:

    ```python
    >>> dataset = dataset.map(
    ...     lambda batch: prepare_copy_inputs(tokenizer, config, batch["src"], batch["tgt"], max_length=400),
    ...     batched=True,
    ...     remove_columns=["src", "tgt"],
    ... )
    ```

    <Tip warning={true}>

    `Dataset.map` fixes each column's type from the first batch it writes. If no example of that first batch has an
    unknown source word, `source_oovs` is typed as lists of nulls and a later batch with words fails with
    `Couldn't cast array of type string to null`. This only happens with (nearly) OOV-free data; the fix is to give
    the types with `features=`:

    ```python
    >>> from datasets import Features, List, Value
    >>> features = Features(
    ...     {
    ...         "input_ids": List(Value("int64")),
    ...         "attention_mask": List(Value("int64")),
    ...         "extended_input_ids": List(Value("int64")),
    ...         "source_oovs": List(Value("string")),
    ...         "labels": List(Value("int64")),
    ...     }
    ... )
    >>> dataset = dataset.map(fn, batched=True, remove_columns=dataset.column_names, features=features)
    ```

    </Tip>

    Args:
        tokenizer ([`PreTrainedTokenizerFast`]):
            A fast tokenizer with an `unk_token` equal to `config.unk_token_id`, and no more than `config.vocab_size`
            tokens.
        config ([`RNNSeq2SeqConfig`]):
            The model's config; `vocab_size`, `max_source_oovs` and `unk_token_id` are read from it.
        sources (`str` or `list[str]`):
            The source text(s).
        targets (`str` or `list[str]`, *optional*):
            The target text(s), as many as sources. Tokenised with `tokenizer(text_target=...)`.
        max_length (`int`, *optional*):
            Maximum length of the tokenised sources (passed to the tokenizer). Unknown words that truncation cuts off
            get no extended id, so target words that only match them stay unknown.
        max_target_length (`int`, *optional*):
            Maximum length of the tokenised targets. Defaults to `max_length`, as `tokenizer(sources,
            text_target=targets, max_length=...)` does.
        truncation (`bool` or `str`, *optional*, defaults to `True`):
            Truncation strategy, passed to the tokenizer.

    Returns:
        `dict`: A plain dict (no padding) with what the tokenizer returns for the sources (`input_ids`,
        `attention_mask`, ...; not `offset_mapping`) and:

        - `extended_input_ids`: `input_ids` with every unknown token that got an extended id replaced by it;
        - `source_oovs`: the unknown source words, `source_oovs[i]` being the word of id `config.vocab_size + i`;
        - `labels` (only with `targets`): the target ids, with extended ids for unknown words of the source.

        Values are lists per example (one level less for a single string).

    Raises:
        `TypeError`: if the tokenizer is not fast, or sources/targets are not strings or lists of strings.
        `ValueError`: if the config does not use the extended vocabulary, the tokenizer has no unk token or another
            one than the config, the tokenizer is larger than `config.vocab_size`, or sources and targets differ in
            number.
    """
    _check_tokenizer_and_config(tokenizer, config)
    source_list, single = _check_texts(sources, "sources")
    if targets is not None:
        target_list, target_single = _check_texts(targets, "targets")
        if target_single != single or len(target_list) != len(source_list):
            raise ValueError(
                "sources and targets must come in the same number (both single strings or lists of the same length): "
                f"got {_describe(source_list, single)} for sources and {_describe(target_list, target_single)} for "
                "targets."
            )
    if max_target_length is None:
        max_target_length = max_length

    if not source_list:  # the tokenizer itself fails on an empty batch
        empty = {name: [] for name in tokenizer.model_input_names}
        empty.update(extended_input_ids=[], source_oovs=[])
        if targets is not None:
            empty["labels"] = []
        return empty

    vocab_size, max_oovs, unk_id = config.vocab_size, config.max_source_oovs, tokenizer.unk_token_id
    unk_token = tokenizer.unk_token

    encoded = tokenizer(source_list, max_length=max_length, truncation=truncation, return_offsets_mapping=True)
    offsets = encoded.pop("offset_mapping")
    result: dict[str, list] = {key: list(value) for key, value in encoded.items()}

    all_extended, all_oovs, all_oov_ids = [], [], []
    for text, ids, spans in zip(source_list, result["input_ids"], offsets, strict=True):
        extended, oovs, oov_ids = list(ids), [], {}
        for position, (token_id, (start, end)) in enumerate(zip(ids, spans, strict=True)):
            if token_id != unk_id or start >= end:
                continue
            word = text[start:end]
            if word == unk_token:
                continue
            key = _normalize(tokenizer, word)
            if key not in oov_ids:
                if len(oovs) >= max_oovs:
                    continue
                oov_ids[key] = vocab_size + len(oovs)
                oovs.append(word)
            extended[position] = oov_ids[key]
        all_extended.append(extended)
        all_oovs.append(oovs)
        all_oov_ids.append(oov_ids)
    result["extended_input_ids"] = all_extended
    result["source_oovs"] = all_oovs

    if targets is not None:
        target_encoded = tokenizer(
            text_target=target_list, max_length=max_target_length, truncation=truncation, return_offsets_mapping=True
        )
        labels = []
        for text, ids, spans, oov_ids in zip(
            target_list, target_encoded["input_ids"], target_encoded["offset_mapping"], all_oov_ids, strict=True
        ):
            example_labels = list(ids)
            if oov_ids:
                for position, (token_id, (start, end)) in enumerate(zip(ids, spans, strict=True)):
                    if token_id == unk_id and start < end and text[start:end] != unk_token:
                        extended_id = oov_ids.get(_normalize(tokenizer, text[start:end]))
                        if extended_id is not None:
                            example_labels[position] = extended_id
            labels.append(example_labels)
        result["labels"] = labels

    if single:
        result = {key: value[0] for key, value in result.items()}
    return result


# ----------------------------------------------------------------------------------------------------------------------
# Collating
# ----------------------------------------------------------------------------------------------------------------------


def _as_int_list(values: Any, name: str) -> list[int]:
    if hasattr(values, "tolist"):  # torch tensors, numpy arrays
        values = values.tolist()
    if isinstance(values, int) or not isinstance(values, Sequence):
        raise TypeError(f"`{name}` must be a 1-D sequence of ids, got {type(values).__name__}.")
    if any(isinstance(value, (list, tuple)) for value in values):
        raise ValueError(f"`{name}` must be a 1-D sequence of ids, got nested sequences.")
    return [int(value) for value in values]


@dataclass
class DataCollatorForCopySeq2Seq(DataCollatorForSeq2Seq):
    """
    [`~transformers.DataCollatorForSeq2Seq`] that also pads `extended_input_ids`, for models with the copy mechanism's
    extended vocabulary (features made by [`prepare_copy_inputs`]).

    `input_ids`, `attention_mask` and `labels` are padded exactly as the parent does (labels with
    `label_pad_token_id`, -100 by default; `decoder_input_ids` from the model when given). `extended_input_ids` is
    then padded to the padded width of `input_ids` with `tokenizer.pad_token_id`, on the tokenizer's `padding_side`,
    so it lines up with `input_ids` position by position; it comes out as the same kind of object as `input_ids`
    (an int64 tensor with `return_tensors="pt"`, an int64 array with `"np"`).

    `source_oovs` (lists of strings) cannot be batched as tensors and is dropped from the batch: it stays on the
    dataset, where it is looked up by row index when decoding (e.g. in `compute_metrics`, with
    [`batch_decode_with_source_oovs`]; the Trainer keeps the evaluation order). The [`~transformers.Trainer`] drops
    the column anyway when `remove_unused_columns=True`, since the model's `forward` does not take it.

    Features without `extended_input_ids` are collated exactly as by the parent; a batch must not mix features with
    and without it.

    Args:
        Those of [`~transformers.DataCollatorForSeq2Seq`].
    """

    def __call__(self, features: list[dict[str, Any]], return_tensors: str | None = None) -> dict[str, Any]:
        if return_tensors is None:
            return_tensors = self.return_tensors
        features = [dict(feature) for feature in features]  # never mutate the caller's (dataset's) rows
        for feature in features:
            feature.pop("source_oovs", None)
        has_extended = ["extended_input_ids" in feature for feature in features]
        if not any(has_extended):
            return super().__call__(features, return_tensors=return_tensors)
        if not all(has_extended):
            raise ValueError(
                f"{sum(has_extended)} of the {len(features)} features have `extended_input_ids` and the others do "
                "not: a batch must be all one or all the other."
            )
        if return_tensors not in ("pt", "np"):
            raise ValueError(f'return_tensors must be "pt" or "np", got {return_tensors!r}.')
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            raise ValueError(
                "The tokenizer has no pad token (`pad_token_id` is None), needed to pad `extended_input_ids`."
            )

        extended = []
        for i, feature in enumerate(features):
            row = _as_int_list(feature.pop("extended_input_ids"), f"features[{i}]['extended_input_ids']")
            if "input_ids" in feature and len(row) != len(feature["input_ids"]):
                raise ValueError(
                    f"features[{i}] has {len(row)} extended_input_ids but {len(feature['input_ids'])} input_ids: they "
                    "must match position by position (as made by prepare_copy_inputs)."
                )
            extended.append(row)

        batch = super().__call__(features, return_tensors=return_tensors)

        input_ids = batch["input_ids"]
        padding_side = self.tokenizer.padding_side
        padded = []
        for i, row in enumerate(extended):
            width = len(input_ids[i])
            if width < len(row):  # only if something truncated input_ids after the check above
                raise ValueError(f"input_ids of example {i} were padded to {width}, shorter than its {len(row)} ids.")
            filler = [pad_id] * (width - len(row))
            padded.append(row + filler if padding_side == "right" else filler + row)

        if isinstance(input_ids, np.ndarray) or return_tensors == "np":
            try:
                batch["extended_input_ids"] = np.array(padded, dtype=np.int64)
            except ValueError:  # ragged (padding=False with different lengths): keep lists, as input_ids are
                batch["extended_input_ids"] = padded
        elif hasattr(input_ids, "dim"):  # a torch tensor
            import torch

            batch["extended_input_ids"] = torch.tensor(padded, dtype=torch.long)
        else:
            batch["extended_input_ids"] = padded
        return batch


# ----------------------------------------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------------------------------------


def _check_oovs(source_oovs: Any, name: str) -> list[str]:
    if isinstance(source_oovs, str) or not isinstance(source_oovs, Sequence):
        raise TypeError(
            f"`{name}` must be a list of strings (one example's OOV words), got {type(source_oovs).__name__}."
        )
    for i, word in enumerate(source_oovs):
        if not isinstance(word, str):
            raise TypeError(
                f"`{name}` must be a list of strings (one example's OOV words), but element {i} is a "
                f"{type(word).__name__}; for a batch use batch_decode_with_source_oovs."
            )
    return list(source_oovs)


def _decode_one(
    tokenizer: PreTrainedTokenizerBase,
    token_ids: Any,
    source_oovs: list[str],
    vocab_size: int,
    skip_special_tokens: bool,
    special_ids: set[int],
    name: str,
) -> str:
    ids = _as_int_list(token_ids, name)
    tokenizer_size = len(tokenizer)
    unk_token = tokenizer.unk_token
    tokens = []
    for token_id in ids:
        if token_id == LABEL_PAD_TOKEN_ID:
            continue
        if token_id < 0:
            raise ValueError(f"`{name}` holds the negative id {token_id}; only -100 (padding) is allowed.")
        if token_id >= vocab_size:
            slot = token_id - vocab_size
            token = source_oovs[slot] if slot < len(source_oovs) else unk_token
        elif token_id >= tokenizer_size:
            token = unk_token
        elif skip_special_tokens and token_id in special_ids:
            continue
        else:
            token = tokenizer.convert_ids_to_tokens(token_id)
            if token is None:  # an id the vocabulary skips
                token = unk_token
        if token is None:
            raise ValueError(
                f"`{name}` holds the id {token_id}, read as unknown, but the tokenizer has no `unk_token`."
            )
        tokens.append(token)
    return tokenizer.convert_tokens_to_string(tokens)


def batch_decode_keeping_unknown(
    tokenizer: PreTrainedTokenizerBase, sequences: Any, skip_special_tokens: bool = True, **decode_kwargs
) -> list[str]:
    r"""
    `tokenizer.batch_decode`, except that the unknown token is kept: it stands for a word the model could not spell.
    This is how [`batch_decode_with_source_oovs`] reads a copy model's outputs, so the outputs of a model without copy
    read, and score, alike (`tokenizer.batch_decode(..., skip_special_tokens=True)` would drop `<unk>` and the model's
    misses with it, flattering BLEU and ROUGE against a copy model that shows them).

    Args:
        tokenizer ([`PreTrainedTokenizerBase`]):
            The tokenizer the ids come from.
        sequences (`list[list[int]]`, `np.ndarray` or `torch.Tensor`):
            The sequences, one per row (no `-100`: replace it by the padding id first).
        skip_special_tokens (`bool`, *optional*, defaults to `True`):
            Leave out special tokens other than the unknown token.
        decode_kwargs:
            Passed on to `tokenizer.batch_decode` (e.g. `clean_up_tokenization_spaces`).

    Returns:
        `list[str]`: The decoded texts, one per row.
    """
    if hasattr(sequences, "tolist"):
        sequences = sequences.tolist()
    special_ids = _special_ids(tokenizer, skip_special_tokens)
    rows = [[token_id for token_id in row if token_id not in special_ids] for row in sequences]
    return tokenizer.batch_decode(rows, skip_special_tokens=False, **decode_kwargs)


def _special_ids(tokenizer: PreTrainedTokenizerBase, skip_special_tokens: bool) -> set[int]:
    if not skip_special_tokens:
        return set()
    return set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}


def _check_vocab_size(tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> None:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)):
        raise TypeError(f"`vocab_size` must be an int (config.vocab_size), got {type(vocab_size).__name__}.")
    if vocab_size < len(tokenizer):
        raise ValueError(
            f"vocab_size ({vocab_size}) is smaller than the tokenizer ({len(tokenizer)} tokens): pass the model's "
            "config.vocab_size, from which the extended ids start."
        )


def decode_with_source_oovs(
    tokenizer: PreTrainedTokenizerBase,
    token_ids: list[int] | np.ndarray | Any,
    source_oovs: list[str],
    vocab_size: int,
    skip_special_tokens: bool = True,
) -> str:
    r"""
    Decodes one sequence that may hold extended-vocabulary ids (from a model with `copy_extended_vocab=True`).

    `tokenizer.decode` silently drops ids it does not know; here an id `vocab_size + i` becomes the example's source
    OOV word `source_oovs[i]`, and the tokens are joined with `tokenizer.convert_tokens_to_string` (the tokenizer's
    decoder). Ids are read as follows:

    - `-100` (label / prediction padding) is skipped;
    - `vocab_size + i` is `source_oovs[i]`, or `tokenizer.unk_token` if the example has fewer than `i + 1` OOV words;
    - ids from `len(tokenizer)` to `vocab_size - 1` (model rows no token uses) are `tokenizer.unk_token`;
    - special tokens (padding, `</s>`, ...) are skipped with `skip_special_tokens`, except the unknown token, which
      stands for a word and is kept (unlike `tokenizer.decode`, which drops it too).

    Args:
        tokenizer ([`PreTrainedTokenizerFast`]):
            The tokenizer the ids come from.
        token_ids (`list[int]`, `np.ndarray` or `torch.Tensor`):
            One 1-D sequence of ids.
        source_oovs (`list[str]`):
            This example's source OOV words, as made by [`prepare_copy_inputs`].
        vocab_size (`int`):
            The model's `config.vocab_size`, the first extended id.
        skip_special_tokens (`bool`, *optional*, defaults to `True`):
            Leave out special tokens other than the unknown token.

    Returns:
        `str`: The decoded text.
    """
    _check_vocab_size(tokenizer, vocab_size)
    oovs = _check_oovs(source_oovs, "source_oovs")
    special_ids = _special_ids(tokenizer, skip_special_tokens)
    return _decode_one(tokenizer, token_ids, oovs, int(vocab_size), skip_special_tokens, special_ids, "token_ids")


def batch_decode_with_source_oovs(
    tokenizer: PreTrainedTokenizerBase,
    sequences: list[list[int]] | np.ndarray | Any,
    source_oovs: list[list[str]],
    vocab_size: int,
    skip_special_tokens: bool = True,
) -> list[str]:
    r"""
    Decodes a batch of sequences that may hold extended-vocabulary ids: [`decode_with_source_oovs`] on each row, with
    that row's OOV words.

    Typical use in `compute_metrics` of a `Seq2SeqTrainer` with `predict_with_generate=True` (predictions and labels
    are padded with -100, which is skipped):

    ```python
    >>> def compute_metrics(eval_pred):
    ...     oovs = eval_dataset["source_oovs"]  # rows in evaluation order
    ...     predictions = batch_decode_with_source_oovs(tokenizer, eval_pred.predictions, oovs, config.vocab_size)
    ...     references = batch_decode_with_source_oovs(tokenizer, eval_pred.label_ids, oovs, config.vocab_size)
    ...     ...
    ```

    Args:
        tokenizer ([`PreTrainedTokenizerFast`]):
            The tokenizer the ids come from.
        sequences (`list[list[int]]`, `np.ndarray` or `torch.Tensor`):
            The sequences, one per row (rows of a list may differ in length).
        source_oovs (`list[list[str]]`):
            Each row's source OOV words, as made by [`prepare_copy_inputs`]; as many as `sequences`.
        vocab_size (`int`):
            The model's `config.vocab_size`, the first extended id.
        skip_special_tokens (`bool`, *optional*, defaults to `True`):
            Leave out special tokens other than the unknown token.

    Returns:
        `list[str]`: The decoded texts, one per row.
    """
    _check_vocab_size(tokenizer, vocab_size)
    if hasattr(sequences, "tolist"):
        sequences = sequences.tolist()
    if isinstance(sequences, str) or not isinstance(sequences, Sequence):
        raise TypeError(f"`sequences` must be a 2-D batch of ids, got {type(sequences).__name__}.")
    if isinstance(source_oovs, str) or not isinstance(source_oovs, Sequence):
        raise TypeError(f"`source_oovs` must be a list of lists of strings, got {type(source_oovs).__name__}.")
    if len(sequences) != len(source_oovs):
        raise ValueError(
            f"Got {len(sequences)} sequences but {len(source_oovs)} source_oovs lists: each sequence needs the OOV "
            "words of its own example (same order)."
        )
    special_ids = _special_ids(tokenizer, skip_special_tokens)
    return [
        _decode_one(
            tokenizer,
            row,
            _check_oovs(oovs, f"source_oovs[{i}]"),
            int(vocab_size),
            skip_special_tokens,
            special_ids,
            f"sequences[{i}]",
        )
        for i, (row, oovs) in enumerate(zip(sequences, source_oovs, strict=True))
    ]
