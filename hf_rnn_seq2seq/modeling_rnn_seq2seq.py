# Copyright 2026 The hf-rnn-seq2seq authors. Licensed under the Apache License, Version 2.0.
"""RNN encoder-decoder with attention (Sutskever et al. 2014; Bahdanau et al. 2015; Luong et al. 2015), copy and
coverage (See et al. 2017) as a transformers model.

    source ids ─► embedding ─► (bi)LSTM/GRU encoder ─► encoder states h_1..h_S ─┐
                                      │ final states                             │ attention (dot/general/additive)
                                      ▼                                          ▼
    target ids ─► embedding ─► [ ; previous attentional vector] ─► LSTM/GRU decoder s_t ─► context c_t
                                                                  h̃_t = tanh(W_c [c_t; s_t]) ─► vocabulary logits
    copy (optional):     P(w) = p_gen · P_vocab(w) + (1 − p_gen) · Σ_{i: x_i = w} a_{t,i}
    coverage (optional): c^t = Σ_{t'<t} a^{t'} is a feature of the attention scores and of the loss

Shape legend, used in every shape comment of this file:
    B   batch size (times beams during beam search)
    S   source length                      T   target length (number of decoder steps in this call)
    E   embedding size                     H   decoder hidden size (= attentional vector size)
    He  encoder output size (directions × per-direction size)
    Le  encoder layers                     L   decoder layers
    V   vocabulary size                    Vx  output width: V, or V + K with an extended copy vocabulary
    K   extended (per-example OOV) copy ids, `max_source_oovs`

Every tensor is batch-first except the RNN's own recurrent state, which torch keeps as (L, B, H).
One code path serves training and inference: `forward` with the full target, and `generate()` feeding one token per
step with the recurrent state carried in `cache` (an `RNNSeq2SeqCache`), give the same numbers.
"""

import dataclasses
import functools
import math
import os
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook
from transformers import GenerationMixin, LogitsProcessor, LogitsProcessorList, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache
from transformers.modeling_outputs import ModelOutput, Seq2SeqLMOutput, Seq2SeqModelOutput
from transformers.pytorch_utils import move_to_device
from transformers.utils import logging

from .configuration_rnn_seq2seq import RNNSeq2SeqConfig
from .generation_rnn_seq2seq import beam_search, greedy_search, uses_greedy_search
from .quantization_rnn_seq2seq import dequantize, quantize_dynamic_int8
from .recurrence_rnn_seq2seq import (  # noqa: F401
    RecurrenceSpec,
    _gru_cell,
    _lstm_cell,
    dropout,
    dropout_mask,
    flush_denormal_grads,
    flush_denormals,
    kmajor_applies,
    kmajor_weights,
    run_encoder_lstm,
    run_input_feeding,
    uses_encoder_lstm,
)

logger = logging.get_logger(__name__)

# The smallest positive float32: probabilities are clamped to it before a log, so log(0) never appears.
_TINY = torch.finfo(torch.float32).tiny
_LOG_TINY = math.log(_TINY)

# The largest vocabulary-by-gates table (V · G·H values, 16 MB in float32) the decoder keeps for inference.
_EMBED_GATE_TABLE_MAX = 1 << 22

# Additive attention without autograd makes its (B, T, S, H) tensor a few sources at a time, at most this many values
# (512 kB in float32) at once: see `RNNSeq2SeqAttention._additive_scores_in_place`.
_ADDITIVE_CHUNK_VALUES = 1 << 17

# Generations stop here when neither `max_length` nor `max_new_tokens` is given (transformers' own default is 20).
DEFAULT_MAX_LENGTH = 256


# ---------------------------------------------------------------------------------------------------------------------
# Input checks: bad input gets an error that names the argument, not a crash deep inside torch.
# ---------------------------------------------------------------------------------------------------------------------


def _check_ids(name: str, ids: torch.Tensor, vocab_size: int, allow_ignore_index: bool = False) -> torch.Tensor:
    """Returns `ids` as int64 after checking type, shape and range (any integer dtype is accepted)."""
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.LongTensor, got {type(ids).__name__}.")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(f"`{name}` must hold integer token ids, got dtype {ids.dtype}.")
    if ids.dim() != 2:
        raise ValueError(f"`{name}` must have shape (batch_size, sequence_length), got {tuple(ids.shape)}.")
    if ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(f"`{name}` is empty (shape {tuple(ids.shape)}): every sequence needs at least one token.")
    low, high = (int(x) for x in torch.aminmax(ids))  # one pass; a decoding step checks its ids too
    if low >= 0 and high < vocab_size:
        return ids.long()
    valid = (ids >= 0) & (ids < vocab_size)
    if allow_ignore_index:
        valid |= ids == -100
    if not bool(valid.all()):
        bad = ids[~valid][:5].tolist()
        allowed = f"[0, {vocab_size})" + (" or -100" if allow_ignore_index else "")
        raise ValueError(f"`{name}` holds ids outside {allowed} (vocab_size={vocab_size}), e.g. {bad}.")
    return ids.long()


def _check_source_mask(attention_mask: torch.Tensor, batch_size: int, source_length: int) -> torch.Tensor:
    """Returns the padding as bool (True = padding, the complement of the mask) after checking the mask's shape and
    that no row is all padding."""
    if tuple(attention_mask.shape) != (batch_size, source_length):
        raise ValueError(
            f"`attention_mask` must have the source's shape (batch_size, source_length) = "
            f"({batch_size}, {source_length}), got {tuple(attention_mask.shape)}."
        )
    padding = attention_mask == 0
    empty = padding.all(dim=1)  # (B,)
    if empty.any():
        empty_rows = empty.nonzero().flatten()
        raise ValueError(
            f"`attention_mask` marks every position of source row(s) {empty_rows.tolist()[:5]} as padding: "
            "an empty source cannot be encoded."
        )
    return padding


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Decoder inputs for teacher forcing: `[start, y_1, …, y_{T-1}]`, with -100 replaced by the pad id.

    Adapted from `transformers.models.bart.modeling_bart.shift_tokens_right`.
    """
    shifted = labels.new_zeros(labels.shape)  # (B, T)
    shifted[:, 1:] = labels[:, :-1].clone()
    shifted[:, 0] = decoder_start_token_id
    shifted.masked_fill_(shifted == -100, pad_token_id)
    return shifted


# ---------------------------------------------------------------------------------------------------------------------
# Outputs and the recurrent state
# ---------------------------------------------------------------------------------------------------------------------


@functools.cache
def _field_names(output_class: type) -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(output_class))


class _FieldsLookedUpOnce:
    """`ModelOutput`'s behaviour, with each class's field names looked up once instead of at every attribute set.

    transformers' `ModelOutput.__setattr__` calls `dataclasses.fields` for each attribute (11-12 per output here), and
    `__post_init__` sets every field a second time: ~36 µs an output, and a decoder step builds two (6 % of a greedy
    step of 30 sentences on CPU); here ~17 µs. The same outputs: the non-None fields are the dict's entries, in field
    order; `past_key_values` stands for `cache`; a lone first field that is not a tensor (a dict, or an iterable of
    (key, value) pairs) is unpacked by transformers' own `__post_init__`."""

    def __setattr__(self, name, value):
        name = self._replace_old_cache_name(name)
        if value is not None and name in _field_names(type(self)):
            OrderedDict.__setitem__(self, name, value)
        object.__setattr__(self, name, value)

    def __post_init__(self):
        names = _field_names(type(self))  # every non-None field is already an entry (`__setattr__`)
        if not torch.is_tensor(self.__dict__.get(names[0])) and all(self.__dict__.get(n) is None for n in names[1:]):
            super().__post_init__()


@dataclass
class RNNSeq2SeqEncoderOutput(_FieldsLookedUpOnce, ModelOutput):
    """
    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, source_length, encoder_output_size)`):
            Top-layer encoder states, both directions concatenated; zero at padded positions.
        final_hidden_state (`torch.FloatTensor` of shape `(batch_size, encoder_layers, encoder_output_size)`):
            Each layer's final hidden state (forward direction at the last real token, backward direction at the
            first). Batch-first, so `generate()` expands it for beams like every other encoder output.
        final_cell_state (`torch.FloatTensor` of the same shape, *optional*):
            The LSTM's final cell states (`None` for GRU).
        hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            With `output_hidden_states=True`: the embedding output `(B, S, E)` and the top-layer states `(B, S, He)`.
        source_ids (`torch.LongTensor` of shape `(batch_size, source_length)`, *optional*):
            With `use_copy`: the source token ids, onto which the copy mechanism scatters the attention. Kept here
            because `generate()` calls the decoder with the encoder outputs only (and expands them for beams).
    """

    last_hidden_state: torch.FloatTensor | None = None
    final_hidden_state: torch.FloatTensor | None = None
    final_cell_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    source_ids: torch.LongTensor | None = None


@dataclass
class RNNSeq2SeqModelOutput(_FieldsLookedUpOnce, Seq2SeqModelOutput):
    """
    [`Seq2SeqModelOutput`] plus what the copy and coverage mechanisms need, returned whenever they apply:

    Args:
        alignment (`torch.FloatTensor` of shape `(batch_size, target_length, source_length)`, *optional*):
            The attention distribution `a_t` of every step (`None` without attention).
        p_gen (`torch.FloatTensor` of shape `(batch_size, target_length)`, *optional*):
            With `use_copy`: the probability of generating from the vocabulary rather than copying.
        coverage (`torch.FloatTensor` of shape `(batch_size, target_length, source_length)`, *optional*):
            With `use_coverage`: the coverage vector `c^t = Σ_{t'<t} a^{t'}` each step's attention saw.
    """

    alignment: torch.FloatTensor | None = None
    p_gen: torch.FloatTensor | None = None
    coverage: torch.FloatTensor | None = None


@dataclass
class RNNSeq2SeqLMOutput(_FieldsLookedUpOnce, Seq2SeqLMOutput):
    """
    [`Seq2SeqLMOutput`] plus, with `output_attentions=True`, what shows how the output was made:

    Args:
        p_gen (`torch.FloatTensor` of shape `(batch_size, target_length)`, *optional*):
            With `use_copy`: the probability of generating from the vocabulary at each step (1 − p_gen is the copy
            probability; the alignment under `cross_attentions` says what was copied).
        coverage (`torch.FloatTensor` of shape `(batch_size, target_length, source_length)`, *optional*):
            With `use_coverage`: the coverage vector each step's attention saw.
    """

    p_gen: torch.FloatTensor | None = None
    coverage: torch.FloatTensor | None = None


class RNNSeq2SeqCache(Cache):
    """The decoder's recurrent state between calls: what a KV cache is to a Transformer.

    Holds the RNN state `hidden` (and `cell` for LSTM), each `(L, B, H)`; the previous attentional vector
    `input_feed` `(B, H)` when input feeding is on; the attention keys `(B, S, H)`, which depend on the source
    only and are computed once per source; and, with attention, the `coverage` `(B, S)` (the sum of all attention
    distributions so far, i.e. `c^{t+1}`) and the last step's attention `last_attention` `(B, S)`, which the coverage
    model and the coverage penalty read. With copy, `copy_source` holds what the copy mixture needs of the source
    only: the checked source ids `(B, S)` and their "same id" matrix `(B, S, S)`, made from the ids a step was given
    and used again while later steps are given the same tensors (none of generate()'s steps but those after its
    batch changed). `forward` updates it in place and returns it under `cache`.

    Beam search reorders it with `reorder_cache(beam_idx)`. The keys (and `copy_source`) are not reordered: `beam_idx`
    only moves hypotheses within one example's group of beams, and under `generate()` they are kept once per source
    `(B_src, …)` for the whole group (`_expand_inputs_for_generation`). Selecting or repeating rows drops
    `copy_source`: the next step makes it again from the ids it is given, selected like the rows.
    An RNN state cannot be rewound, so the cache is not croppable (assisted decoding is refused).
    """

    is_compileable = False

    def __init__(
        self,
        hidden: torch.Tensor,
        cell: torch.Tensor | None,
        input_feed: torch.Tensor | None,
        attention_keys: torch.Tensor | None,
        coverage: torch.Tensor | None = None,
        last_attention: torch.Tensor | None = None,
        seen_tokens: int = 0,
    ):
        super().__init__(layers=[])
        self.hidden = hidden  # (L, B, H)
        self.cell = cell  # (L, B, H) or None
        self.input_feed = input_feed  # (B, H) or None
        self.attention_keys = attention_keys  # (B, S, H) or None
        self.coverage = coverage  # (B, S) or None
        self.last_attention = last_attention  # (B, S) or None
        self.seen_tokens = seen_tokens
        self.copy_source = None  # (the ids given, source ids (B, S), same-id matrix (B, S, S)), set by the LM

    def __len__(self) -> int:
        return self.hidden.shape[0]

    def __repr__(self) -> str:
        return f"RNNSeq2SeqCache(layers={self.hidden.shape[0]}, batch={self.hidden.shape[1]}, seen={self.seen_tokens})"

    @property
    def is_croppable(self) -> bool:
        return False

    @property
    def batch_size(self) -> int:
        return self.hidden.shape[1]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen_tokens

    def update(self, *args, **kwargs):
        raise NotImplementedError("RNNSeq2SeqCache holds a recurrent state, not keys and values.")

    def crop(self, tokens_to_remove: int) -> None:
        raise ValueError("An RNN state cannot be cropped back to an earlier step (assisted decoding is unsupported).")

    def _map_batch(self, fn, keys_too: bool) -> None:
        self.hidden = fn(self.hidden, 1)
        self.cell = None if self.cell is None else fn(self.cell, 1)
        self.input_feed = None if self.input_feed is None else fn(self.input_feed, 0)
        self.coverage = None if self.coverage is None else fn(self.coverage, 0)
        self.last_attention = None if self.last_attention is None else fn(self.last_attention, 0)
        if keys_too and self.attention_keys is not None:
            self.attention_keys = fn(self.attention_keys, 0)
        if keys_too:
            self.copy_source = None  # made again from the ids of the next step

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self._map_batch(lambda t, dim: t.index_select(dim, beam_idx.to(t.device)), keys_too=False)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.attention_keys is not None and self.attention_keys.shape[0] != self.batch_size:
            raise ValueError(
                "This cache's attention keys are shared by groups of rows (generate()'s beams): selecting single rows "
                "would break the groups."
            )
        self._map_batch(lambda t, dim: t.index_select(dim, indices.to(t.device)), keys_too=True)

    def select_rows(self, rows: torch.LongTensor, sources: torch.LongTensor) -> None:
        """Keeps the given rows, and the attention keys of the given sources when they are kept once per source (beam
        search drops the beams of the sources it has finished)."""
        keys, row_count = self.attention_keys, self.batch_size
        self._map_batch(lambda t, dim: t.index_select(dim, rows.to(t.device)), keys_too=False)
        if keys is not None:
            self.attention_keys = keys.index_select(
                0, (rows if keys.shape[0] == row_count else sources).to(keys.device)
            )
        self.copy_source = None  # made again from the ids of the next step

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._map_batch(lambda t, dim: t.repeat_interleave(repeats, dim=dim), keys_too=True)

    def reset(self) -> None:
        raise ValueError("An RNNSeq2SeqCache cannot be reset; start a new generation with `cache=None`.")


# ---------------------------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------------------------


def _linear(layer: nn.Linear, x: torch.Tensor, kmajor: dict | None, name: str) -> torch.Tensor:
    """`layer(x)`, from the (in, out) copy of its weight `kmajor[name]` where there is one."""
    if not kmajor or name not in kmajor:
        return layer(x)
    rows = x.reshape(-1, x.shape[-1])
    out = rows @ kmajor[name] if layer.bias is None else torch.addmm(layer.bias, rows, kmajor[name])
    return out.view(*x.shape[:-1], -1)


class RNNSeq2SeqAttention(nn.Module):
    """Global attention over the encoder states, then the attentional vector (Luong et al. 2015, eq. 5):

    score(s_t, h_i) = s_tᵀ h_i                       (dot)
                    = s_tᵀ W_a h_i                   (general)
                    = vᵀ tanh(W_s s_t + W_h h_i + b)  (additive, Bahdanau et al. 2015)
    a_t = softmax_i(score(s_t, h_i))  over real (non-padding) source positions
    c_t = Σ_i a_{t,i} h_i
    h̃_t = tanh(W_c [c_t; s_t])

    With coverage (See et al. 2017, eq. 11) the key of source position i also carries its coverage c^t_i, through a
    vector w_c (initialised to zero, so a model without coverage is unchanged when it is switched on):

    score(s_t, h_i) = vᵀ tanh(W_s s_t + W_h h_i + w_c c^t_i + b)     (additive: the paper's form)
                    = s_tᵀ (W_a h_i + w_c c^t_i)                    (general; dot without W_a)
    """

    def __init__(self, config: RNNSeq2SeqConfig):
        super().__init__()
        self.attention_type = config.attention_type
        he, h = config.encoder_output_size, config.hidden_size
        if self.attention_type in ("general", "additive"):
            self.key_proj = nn.Linear(he, h, bias=False)  # W_a or W_h: applied once per source
        if self.attention_type == "additive":
            self.query_proj = nn.Linear(h, h, bias=True)  # W_s, b
            self.score_proj = nn.Linear(h, 1, bias=False)  # v
        self.combine = nn.Linear(he + h, h, bias=False)  # W_c
        self.coverage_weight = nn.Parameter(torch.zeros(h)) if config.use_coverage else None  # w_c

    def project_keys(self, encoder_states: torch.Tensor) -> torch.Tensor:
        """The source-only half of the score, computed once per source rather than once per step."""
        if self.attention_type == "dot":
            return encoder_states  # (B, S, He), He == H
        return self.key_proj(encoder_states)  # (B, S, He) -> (B, S, H)

    def forward(
        self,
        query: torch.Tensor,  # (B, T, H) decoder states s_t
        keys: torch.Tensor,  # (B_src, S, H) from project_keys; B = g · B_src, see below
        encoder_states: torch.Tensor,  # (B_src, S, He)
        padding_mask: torch.Tensor,  # (B_src, 1, S) bool, True = padding (inverted once per call, not per step)
        coverage: torch.Tensor | None = None,  # (B, T, S) c^t of each query step (use_coverage only)
        keep_tanh: list | None = None,  # additive: tanh(·) (B, T, S, H) is appended here, for a hand-written backward
        kmajor: dict | None = None,  # (in, out) copies of W_c ("combine") and W_s ("query"), see `kmajor_weights`
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # g consecutive query rows may share one source (generate()'s beams / returned sequences, B = g · B_src): they
        # attend as g·T queries of that source, so its keys and states are read once, not once per beam.
        batch_size, steps = query.shape[:2]
        group = batch_size // keys.shape[0]
        if group > 1:
            query = query.reshape(keys.shape[0], group * steps, -1)  # (B_src, g·T, H)
            coverage = None if coverage is None else coverage.reshape(keys.shape[0], group * steps, -1)
        if self.attention_type == "additive" and not torch.is_grad_enabled():
            scores = self._additive_scores_in_place(
                _linear(self.query_proj, query, kmajor, "query"), keys, coverage, keep_tanh
            )
        elif self.attention_type == "additive":  # under autograd: out of place
            hidden = _linear(self.query_proj, query, kmajor, "query").unsqueeze(2) + keys.unsqueeze(1)  # (B, T, S, H)
            if coverage is not None:  # + w_c c^t_i
                hidden = hidden + coverage.unsqueeze(-1) * self.coverage_weight
            hidden = torch.tanh(hidden)
            if keep_tanh is not None:
                keep_tanh.append(hidden)
            scores = self.score_proj(hidden).squeeze(-1)  # (B, T, S)
        else:
            scores = query @ keys.transpose(1, 2)  # (B, T, H) x (B, H, S) -> (B, T, S)
            if coverage is not None:
                scores = scores + coverage * (query @ self.coverage_weight).unsqueeze(-1)  # + c^t_i (s_tᵀ w_c)
        # finfo.min rather than -inf: stays finite in half precision; every row has a real position (checked).
        scores = scores.masked_fill(padding_mask, torch.finfo(scores.dtype).min)
        # softmax in at least float32 (half precision under autocast), float64 stays float64
        flush_denormal_grads(scores)  # softmax's backward makes ∂/∂score_i subnormal where a_i is tiny
        weights = torch.softmax(scores, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32))
        weights = flush_denormals(weights.to(encoder_states.dtype))  # (B, T, S); e^{-90} is subnormal: 0
        context = weights @ encoder_states  # (B, T, S) x (B, S, He) -> (B, T, He)
        attentional = torch.tanh(_linear(self.combine, torch.cat([context, query], dim=-1), kmajor, "combine"))
        if group > 1:
            attentional, weights, context = (x.reshape(batch_size, steps, -1) for x in (attentional, weights, context))
        return attentional, weights, context

    def _chunks_apply(self) -> bool:
        """Whether additive scores may go a few sources at a time: on CPU, with v a plain linear layer (a hooked or
        wrapped one, PEFT's say, sees the whole tensor in one call)."""
        v = self.score_proj
        return (
            v.weight.device.type == "cpu"
            and type(v) is nn.Linear
            and not v._forward_hooks
            and not v._forward_pre_hooks
        )

    def _additive_scores_in_place(self, query, keys, coverage, keep_tanh):
        """Without autograd (generation; the hand-written recurrence's forward): vᵀ tanh(W_s s_t + b + W_h h_i
        [+ w_c c^t_i]) (B, T, S) from the projected queries (B, T, H) and keys (B, S, H), the (B, T, S, H) sum
        squashed in place (each new tensor of that size costs an allocation and fresh pages: beam 5 on 30 sentences,
        with coverage, 3.3 -> 0.9 ms a step). `keep_tanh`, if given, gets the whole tanh tensor for the backward.

        Otherwise, where `_chunks_apply`, the sum goes a few sources at a time (`_ADDITIVE_CHUNK_VALUES`), each slice
        made, squashed and reduced while it is in cache: the whole tensor is several MB in decoding (beam 5 on 30
        sources of 25 tokens: 3.8 MB), and a new tensor that size often comes from fresh memory pages, which the
        kernel maps and zeroes on first touch: its sum took 1.8 ms a step where the same sum into reused memory took
        0.37."""
        batch_size, steps, _ = query.shape
        sources = batch_size
        if keep_tanh is None and self._chunks_apply():
            sources = max(1, _ADDITIVE_CHUNK_VALUES // (steps * keys.shape[1] * keys.shape[2]))
        parts = []
        for start in range(0, batch_size, sources):
            now = slice(start, start + sources)
            hidden = query[now].unsqueeze(2) + keys[now].unsqueeze(1)  # (b, T, S, H)
            if coverage is not None:  # + w_c c^t_i
                hidden.addcmul_(coverage[now].unsqueeze(-1), self.coverage_weight)
            hidden.tanh_()
            if keep_tanh is not None:
                keep_tanh.append(hidden)
            parts.append(self.score_proj(hidden).squeeze(-1))  # (b, T, S)
        return parts[0] if len(parts) == 1 else torch.cat(parts)


class RNNSeq2SeqEncoder(nn.Module):
    """Embedding → (bi)LSTM/GRU over packed sequences, so padding (left or right) never changes a result."""

    main_input_name = "input_ids"

    def __init__(self, config: RNNSeq2SeqConfig, embed_tokens: nn.Embedding):
        super().__init__()
        self.config = config
        self.embed_tokens = embed_tokens
        self.dropout = nn.Dropout(config.dropout)
        rnn_class = nn.LSTM if config.cell_type == "lstm" else nn.GRU
        self.rnn = rnn_class(
            config.embedding_size,
            config.encoder_hidden_size_per_direction,
            num_layers=config.encoder_layers,
            batch_first=True,
            bidirectional=config.bidirectional_encoder,
            dropout=config.dropout if config.encoder_layers > 1 else 0.0,
        )

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> RNNSeq2SeqEncoderOutput | tuple:
        # `output_attentions` is accepted because generate() passes it; the encoder has no attention of its own.
        input_ids = _check_ids("input_ids", input_ids, self.config.vocab_size)
        batch_size, source_length = input_ids.shape
        if attention_mask is None:
            if self.config.pad_token_id is not None and bool((input_ids == self.config.pad_token_id).any()):
                logger.warning_once(
                    "`input_ids` contain the pad token but no `attention_mask` was given: the pad tokens are encoded "
                    "as real tokens. Pass the tokenizer's `attention_mask` to ignore them."
                )
            mask = torch.ones_like(input_ids, dtype=torch.bool)
        else:
            mask = ~_check_source_mask(attention_mask, batch_size, source_length)

        embeds = dropout(self.embed_tokens(input_ids), self.dropout.p, self.training)  # (B, S, E)
        lengths = mask.sum(dim=1)  # (B,)
        if bool((lengths == source_length).all()):
            self.rnn.flatten_parameters()  # cuDNN wants one contiguous weight chunk (a no-op on CPU)
            states, final = self.rnn(embeds)  # (B, S, He)
        else:
            # Each row's real tokens in reading order: order[b, :lengths[b]] (a no-op for right padding).
            order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # (B, S)
            if uses_encoder_lstm(self.rnn, embeds):
                # Training on CPU: the packed LSTM with a hand-written backward (see recurrence_rnn_seq2seq.py).
                states, final = run_encoder_lstm(self.rnn, embeds, order, lengths)  # (B, S, He)
            else:
                # Packing needs each row's real tokens first: move them to the front, run the packed RNN, then put
                # every output back at its token's original position. Right padding (no real token after a pad)
                # needs neither move. The moves are row copies by flat index (B·S rows): `gather`/`scatter_` with an
                # index expanded over the features took 0.57 ms of a 5 ms encoder call (30 × 25 tokens, CPU).
                self.rnn.flatten_parameters()
                right_padded = bool((mask[:, 1:] <= mask[:, :-1]).all())
                front = embeds  # (B, S, E)
                if not right_padded:
                    offsets = torch.arange(0, batch_size * source_length, source_length, device=mask.device)
                    to_front = (order + offsets[:, None]).view(-1)  # (B·S,) flat source row of each front row
                    front = embeds.reshape(-1, embeds.shape[-1]).index_select(0, to_front).view_as(embeds)
                packed = nn.utils.rnn.pack_padded_sequence(
                    front, lengths.cpu(), batch_first=True, enforce_sorted=False
                )
                packed_states, final = self.rnn(packed)
                states, _ = nn.utils.rnn.pad_packed_sequence(
                    packed_states, batch_first=True, total_length=source_length
                )  # (B, S, He), zeros after each row's length
                if not right_padded:  # back: the front row of each original position (pads read the zeros)
                    back = (order.argsort(dim=1) + offsets[:, None]).view(-1)  # (B·S,) the inverse permutation
                    states = states.reshape(-1, states.shape[-1]).index_select(0, back).view_as(states)

        final_hidden, final_cell = final if isinstance(final, tuple) else (final, None)
        final_hidden = self._batch_first(final_hidden)  # (Le·D, B, He/D) -> (B, Le, He)
        final_cell = None if final_cell is None else self._batch_first(final_cell)
        hidden_states = (embeds, states) if output_hidden_states else None
        source_ids = input_ids if self.config.use_copy else None
        if return_dict is False:
            return tuple(v for v in (states, final_hidden, final_cell, hidden_states) if v is not None)
        return RNNSeq2SeqEncoderOutput(states, final_hidden, final_cell, hidden_states, source_ids)

    def _batch_first(self, state: torch.Tensor) -> torch.Tensor:
        """(Le·D, B, He/D) as torch returns it -> (B, Le, He) with the directions of a layer concatenated."""
        directions = 2 if self.config.bidirectional_encoder else 1
        layers_x_dirs, batch_size, size = state.shape
        state = state.view(layers_x_dirs // directions, directions, batch_size, size)  # (Le, D, B, He/D)
        return state.permute(2, 0, 1, 3).reshape(batch_size, layers_x_dirs // directions, directions * size)


class RNNSeq2SeqBridge(nn.Module):
    """The decoder's initial state from the encoder's final states (`config.bridge`):

    - `zeros`: s_0 = 0;
    - `last`:  s_0 of decoder layer l = final state of encoder layer l + max(0, Le − L) (layers beyond the encoder's
      depth repeat its top layer);
    - `dense`: s_0 = tanh(W [final states of all encoder layers]), one W for h and one for c.
    """

    def __init__(self, config: RNNSeq2SeqConfig):
        super().__init__()
        self.kind = config.bridge
        self.layers, self.hidden_size = config.decoder_layers, config.hidden_size
        n_states = 2 if config.cell_type == "lstm" else 1
        if self.kind == "dense":
            in_size, out_size = config.encoder_layers * config.encoder_output_size, self.layers * self.hidden_size
            self.dense = nn.ModuleList([nn.Linear(in_size, out_size) for _ in range(n_states)])
        offset = max(0, config.encoder_layers - self.layers)
        self.source_layer = [min(layer + offset, config.encoder_layers - 1) for layer in range(self.layers)]

    def forward(self, encoder_outputs: RNNSeq2SeqEncoderOutput, with_cell: bool) -> list[torch.Tensor]:
        finals = [encoder_outputs.final_hidden_state] + ([encoder_outputs.final_cell_state] if with_cell else [])
        batch_size = finals[0].shape[0]
        if self.kind == "zeros":
            return [finals[0].new_zeros(self.layers, batch_size, self.hidden_size) for _ in finals]  # (L, B, H)
        if self.kind == "last":
            return [final[:, self.source_layer].transpose(0, 1).contiguous() for final in finals]  # (L, B, H)
        return [
            torch.tanh(dense(final.flatten(1)))
            .view(batch_size, self.layers, self.hidden_size)
            .transpose(0, 1)
            .contiguous()  # (B, Le·He) -> (B, L·H) -> (L, B, H)
            for dense, final in zip(self.dense, finals, strict=True)
        ]


@dataclass
class _DecoderOutput:
    """What one decoder call returns (internal)."""

    attentional: torch.Tensor  # (B, T, H) h̃_t, after dropout
    alignment: torch.Tensor | None  # (B, T, S) a_t
    p_gen: torch.Tensor | None  # (B, T)
    coverage: torch.Tensor | None  # (B, T, S) c^t seen by each step (use_coverage only)
    next_coverage: torch.Tensor | None  # (B, S) Σ of all attention so far: the next call's c^t
    state: list[torch.Tensor]  # [h (L, B, H)] + [c (L, B, H)] for LSTM
    input_feed: torch.Tensor | None  # (B, H)
    embeds: torch.Tensor | None  # (B, T, E); None where nothing read them (see `RNNSeq2SeqDecoder.forward`)
    rnn_outputs: torch.Tensor  # (B, T, H) s_t


# Optimiser steps taken in this process, by any optimiser (`_DerivedWeights`).
_optimizer_steps = 0


def _count_optimizer_step(optimizer, args, kwargs) -> None:
    global _optimizer_steps
    _optimizer_steps += 1


register_optimizer_step_post_hook(_count_optimizer_step)


class _DerivedWeights:
    """Tensors made from weights for inference (the embedding-gate table, the K-major step weights), kept between
    calls while those weights are unchanged: the same tensor objects (weak references: a freed tensor's storage may
    be reused by a new one), with the same storage and version counter, and no optimiser step taken since. (A torch
    optimiser updates weights in place, and a fused one, such as the AdamW `Trainer` uses by default, does so without
    bumping their version counters: so any optimiser step in the process, of any model, drops what is kept.) An edit
    through `.data` bypasses the version counter, for autograd as for this cache: call
    `model.model.decoder._derived.clear()` after one. Not pickled, not deep-copied: a copy makes its own."""

    def __init__(self):
        self._kept = {}  # name -> (weak references to the weights, their state, the derived value)

    def get(self, name: str, weights: list[torch.Tensor], make):
        """The value `make()` derived from `weights`, kept or made now; None for inference-mode weights (which count
        no versions)."""
        try:
            state = (_optimizer_steps, *((w.data_ptr(), w._version, w.dtype, w.device, w.shape) for w in weights))
        except RuntimeError:  # inference tensors keep no version counter
            return None
        kept = self._kept.get(name)
        if kept is None or kept[1] != state or any(ref() is not w for ref, w in zip(kept[0], weights, strict=True)):
            kept = self._kept[name] = ([weakref.ref(w) for w in weights], state, make())
        return kept[2]

    def kept(self, name: str):
        """The value kept under `name`, or None."""
        return self._kept[name][2] if name in self._kept else None

    def clear(self) -> None:
        self._kept = {}

    def __getstate__(self):
        return {"_kept": {}}

    def __deepcopy__(self, memo):
        return _DerivedWeights()


class RNNSeq2SeqDecoder(nn.Module):
    """Embedding → LSTM/GRU → attention → attentional vector h̃_t (and the copy gate p_gen), for any number of steps
    from a given state.

    Without input feeding the RNN runs over all steps in one call, and so does attention unless coverage makes each
    step's attention depend on the earlier ones. With input feeding step t needs h̃_{t-1}, so it steps; the part of
    the first layer's input projection that depends on the embeddings only, `W_e · emb(y_t) + b`, is computed for all
    steps before the loop.
    """

    def __init__(self, config: RNNSeq2SeqConfig, embed_tokens: nn.Embedding):
        super().__init__()
        self.config = config
        self.embed_tokens = embed_tokens
        self.dropout = nn.Dropout(config.dropout)
        self.is_lstm = config.cell_type == "lstm"
        self.input_feeding = config.input_feeding
        self.use_coverage = config.use_coverage
        rnn_class = nn.LSTM if self.is_lstm else nn.GRU
        input_size = config.embedding_size + (config.hidden_size if config.input_feeding else 0)
        self.rnn = rnn_class(
            input_size,
            config.hidden_size,
            num_layers=config.decoder_layers,
            batch_first=True,
            dropout=config.dropout if config.decoder_layers > 1 else 0.0,
        )
        self.attention = RNNSeq2SeqAttention(config) if config.attention_type != "none" else None
        self.int8_gates = None  # int8 twins of the recurrence's products (`model.quantize_dynamic_int8()`)
        self._derived = _DerivedWeights()  # inference: the embedding-gate table and the K-major step weights
        if config.use_copy:
            # p_gen = σ(w_cᵀ c_t + w_sᵀ s_t + w_xᵀ x_t + b) (See et al. 2017, eq. 8): one map of [c_t; s_t; x_t]
            self.copy_gate = nn.Linear(config.encoder_output_size + config.hidden_size + config.embedding_size, 1)
        else:
            self.copy_gate = None

    def forward(
        self,
        input_ids: torch.LongTensor,  # (B, T)
        encoder_states: torch.Tensor,  # (B, S, He)
        attention_keys: torch.Tensor | None,  # (B, S, H)
        padding_mask: torch.Tensor,  # (B, 1, S) bool, True = padding
        state: list[torch.Tensor],  # [h (L, B, H)] + [c (L, B, H)] for LSTM
        input_feed: torch.Tensor | None,  # (B, H)
        coverage: torch.Tensor | None,  # (B, S) Σ of the attention of all earlier steps (None without attention)
    ) -> _DecoderOutput:
        # In inference the input-feeding loop looks the embeddings up only where it reads them (not where the
        # embedding-gate table stands for them): `embeds` is then None, unless a copy gate reads them.
        embeds = None
        if not self.input_feeding or self.copy_gate is not None or self.training or torch.is_grad_enabled():
            embeds = dropout(self.embed_tokens(input_ids), self.dropout.p, self.training)  # (B, T, E)
        if self.input_feeding:
            rnn_outputs, attentional, weights, context, coverages, state, coverage, embeds = self._input_feeding_loop(
                input_ids, embeds, encoder_states, attention_keys, padding_mask, state, input_feed, coverage
            )  # attentional after dropout
            input_feed = attentional[:, -1]  # (B, H) h̃ of the last step, the next call's input feed
        else:
            self.rnn.flatten_parameters()  # as in the encoder: one cuDNN call over all T steps
            rnn_outputs, final = self.rnn(embeds, tuple(state) if self.is_lstm else state[0])  # (B, T, H)
            state = list(final) if self.is_lstm else [final]
            if self.attention is None:  # the fixed-context decoder: no attention
                attentional, weights, context, coverages = rnn_outputs, None, None, None
            elif self.use_coverage:  # step t's attention depends on the earlier steps' through the coverage
                steps = []
                for query in rnn_outputs.split(1, dim=1):  # T × (B, 1, H)
                    step, coverage = self._attend(query, encoder_states, attention_keys, padding_mask, coverage)
                    steps.append(step)
                attentional, weights, context, coverages = (
                    torch.cat(column, dim=1) for column in zip(*steps, strict=True)
                )
            else:
                attentional, weights, context = self.attention(
                    rnn_outputs, attention_keys, encoder_states, padding_mask
                )
                coverage, coverages = coverage + weights.sum(dim=1), None  # (B, S)
            attentional = dropout(attentional, self.dropout.p, self.training)  # (B, T, H); the recurrence: per step
        if not self.use_coverage:
            coverages = None  # c^t is a model output only with coverage
        p_gen = None
        if self.copy_gate is not None:
            gate_inputs = torch.cat([context, rnn_outputs, embeds], dim=-1)  # (B, T, He + H + E)
            p_gen = torch.sigmoid(self.copy_gate(gate_inputs)).squeeze(-1)  # (B, T)
        return _DecoderOutput(attentional, weights, p_gen, coverages, coverage, state, input_feed, embeds, rnn_outputs)

    def _attend(self, query, encoder_states, attention_keys, padding_mask, coverage):
        """Attention for one step `query` (B, 1, H) given c^t = `coverage` (B, S); returns the step's
        (attentional, weights, context, c^t as (B, 1, S)) and c^{t+1} = c^t + a_t."""
        coverage_t = coverage.unsqueeze(1)  # (B, 1, S)
        attentional, weights, context = self.attention(
            query, attention_keys, encoder_states, padding_mask, coverage_t if self.use_coverage else None
        )
        return (attentional, weights, context, coverage_t), coverage + weights.squeeze(1)

    def _embed_gate_table(self, spec: RecurrenceSpec) -> torch.Tensor | None:
        """In inference, W_e · emb(w) + b for every word w of the vocabulary (V, G·H), so that each step looks its
        tokens' rows up instead of multiplying their embeddings (~8 % of a beam-5 step on CPU at E = 128, H = 256).
        Kept between calls while its weights are unchanged (`_DerivedWeights`). None where it does not apply:
        with a gradient, dropout or autocast, for an embedding module other than a plain `nn.Embedding`
        without hooks (a PEFT wrapper, say), for inference-mode weights, and for tables over
        `_EMBED_GATE_TABLE_MAX` values."""
        embedding = self.embed_tokens
        if torch.is_grad_enabled() or (self.training and self.dropout.p > 0):
            return None
        # only a plain embedding, whose output the weight alone decides (not one wrapped, e.g. by PEFT, or hooked)
        if type(embedding) is not nn.Embedding or embedding.max_norm is not None:
            return None
        if (
            embedding._forward_hooks
            or embedding._forward_pre_hooks
            or torch.is_autocast_enabled(embedding.weight.device.type)
        ):
            return None
        rnn = spec.rnn
        parts = [embedding.weight, rnn.weight_ih_l0, rnn.bias_ih_l0] + (
            [rnn.bias_hh_l0] if spec.folds_hidden_bias else []
        )
        if embedding.weight.shape[0] * rnn.weight_ih_l0.shape[0] > _EMBED_GATE_TABLE_MAX:
            return None
        return self._derived.get(
            "embed_gates",
            parts,
            lambda: F.linear(embedding.weight, rnn.weight_ih_l0[:, : spec.embedding_size], spec.embed_gate_bias()),
        )

    def _input_feeding_loop(
        self, input_ids, embeds, encoder_states, attention_keys, padding_mask, state, input_feed, coverage
    ):
        """The steps of the input-feeding decoder (`recurrence_rnn_seq2seq.py`): returns s_t, h̃_t (after dropout), a_t,
        c_t, c^t (each (B, T, ·)), the final state, c^T and `embeds` (None in inference, unless read here)."""
        batch_size, steps = input_ids.shape
        emb_size = self.config.embedding_size
        rnn = self.rnn
        feed_mask = layer_masks = None
        if self.training and self.dropout.p > 0:  # one mask for all steps: h̃_t's dropout
            feed_mask = dropout_mask(embeds, (batch_size, steps, self.config.hidden_size), self.dropout.p)
        if self.training and rnn.num_layers > 1 and rnn.dropout > 0:  # nn.LSTM/GRU's dropout between layers
            layer_masks = dropout_mask(embeds, (rnn.num_layers - 1, batch_size, steps, rnn.hidden_size), rnn.dropout)
        spec = RecurrenceSpec(
            rnn, self.attention, emb_size, padding_mask, feed_mask, layer_masks, self.use_coverage, self.int8_gates
        )
        # Inference: K-major copies of the step weights, kept between calls (not in training, see `kmajor_weights`).
        if not torch.is_grad_enabled() and (weights := spec.step_weights(batch_size)) is not None:
            spec.kmajor = self._derived.get("kmajor", list(weights.values()), lambda: kmajor_weights(weights))
        # Layer 0's input is [emb(y_t); h̃_{t-1}], so W_ih · x = W_e · emb(y_t) + W_f · h̃_{t-1}: the first half for all
        # steps at once.
        table = None if self.int8_gates else self._embed_gate_table(spec)
        if table is None and embeds is None:
            embeds = self.embed_tokens(input_ids)  # (B, T, E) inference: no dropout
        if self.int8_gates:
            embed_gates = self.int8_gates["embed", 0](embeds)  # (B, T, G·H)
        elif table is not None:
            embed_gates = F.embedding(input_ids, table)  # (B, T, G·H), a new tensor the loop may write into
        else:
            embed_gates = F.linear(embeds, rnn.weight_ih_l0[:, :emb_size], spec.embed_gate_bias())  # (B, T, G·H)
        query, attentional, weights, context, coverages, hidden, cell, coverage = run_input_feeding(
            spec, embed_gates, state[0], state[1] if self.is_lstm else None, input_feed, coverage, attention_keys,
            encoder_states,
        )  # fmt: skip
        state = [hidden] + ([cell] if self.is_lstm else [])  # (L, B, H)
        return query, attentional, weights, context, coverages, state, coverage, embeds


# ---------------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------------


def _local_weights_files(checkpoint) -> list[str]:
    """The safetensors files of a local checkpoint folder (empty for a Hub id)."""
    folder = str(checkpoint)
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, name) for name in os.listdir(folder) if name.endswith(".safetensors"))


def _shape_mismatches(model_class, checkpoint, files: list[str], config=None) -> str:
    """'name: checkpoint [..] vs config [..]' for each weight in `files` (a local checkpoint's) whose shape differs
    from what its config builds (the model is built on the meta device: no memory, no initialisation)."""
    from safetensors import safe_open

    if not files:
        return ""
    if not isinstance(config, RNNSeq2SeqConfig):
        config = model_class.config_class.from_pretrained(checkpoint)
    with torch.device("meta"):
        expected = {name: tuple(tensor.shape) for name, tensor in model_class(config).state_dict().items()}
    found = []
    for path in files:
        with safe_open(path, framework="pt") as weights:
            for name in weights.keys():
                shape = tuple(weights.get_slice(name).get_shape())
                if name in expected and shape != expected[name]:
                    found.append(f"{name}: checkpoint {list(shape)} vs config {list(expected[name])}")
    sizes = f"vocab_size={config.vocab_size}, embedding_size={config.embedding_size}, hidden_size={config.hidden_size}"
    return f"{'; '.join(found)} (config.json has {sizes})" if found else ""


class RNNSeq2SeqPreTrainedModel(PreTrainedModel):
    config_class = RNNSeq2SeqConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    _no_split_modules = ["RNNSeq2SeqEncoder", "RNNSeq2SeqDecoder"]
    # The recurrent state cannot be cropped: assisted/speculative decoding is refused with a clear error.
    _is_stateful = True
    _int8_quantized = False  # set by quantize_dynamic_int8()

    def quantize_dynamic_int8(self) -> "RNNSeq2SeqPreTrainedModel":
        """Quantises this model in place for CPU inference: int8 matrix products (see `quantization_rnn_seq2seq.py`),
        about 2.5-3× faster products. Sets `config.cpu_quantization="dynamic_int8"`, so `save_pretrained` writes an
        ordinary float32 checkpoint that `from_pretrained` loads quantised again. Returns the model."""
        quantize_dynamic_int8(self)
        for module in self.modules():
            if isinstance(module, RNNSeq2SeqPreTrainedModel):
                module._int8_quantized = True
        return self

    def dequantize(self):
        """Undoes `quantize_dynamic_int8` (float32 products again; the weights never changed). Other quantisation
        (transformers' `quantization_config`) is transformers' own `dequantize`."""
        if not self.config.cpu_quantization:
            return super().dequantize()
        dequantize(self)
        for module in self.modules():
            if isinstance(module, RNNSeq2SeqPreTrainedModel):
                module._int8_quantized = False
        return self

    def _check_quantization(self) -> None:
        if not self.config.cpu_quantization:
            return
        if not self._int8_quantized:
            raise ValueError(
                f"config.cpu_quantization={self.config.cpu_quantization!r} but the model is not quantised: load it with "
                "`from_pretrained` (which quantises it) or call `model.quantize_dynamic_int8()`."
            )
        if self.training:
            raise ValueError(
                "This model runs int8 matrix products (config.cpu_quantization='dynamic_int8'), for inference only: "
                "call `model.dequantize()` before training it (the float32 weights are intact)."
            )

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        r = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.uniform_(module.weight, -r, r)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.uniform_(module.weight, -r, r)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, (nn.LSTM, nn.GRU)):
            for name, param in module.named_parameters():
                if name.startswith("weight"):
                    init.uniform_(param, -r, r)
                else:
                    init.zeros_(param)
        elif isinstance(module, RNNSeq2SeqAttention) and module.coverage_weight is not None:
            # Zero: switching coverage on in a trained model (See et al.'s recipe) leaves its outputs unchanged.
            init.zeros_(module.coverage_weight)

    def resize_token_embeddings(self, new_num_tokens=None, pad_to_multiple_of=None, mean_resizing=True):
        """Resizes the source embeddings, the target embeddings (when not shared) and the output layer, keeping ties."""
        embeddings = super().resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)
        if not self.config.share_encoder_decoder_embeddings:
            decoder = self.base_model.decoder
            decoder.embed_tokens = self._get_resized_embeddings(
                decoder.embed_tokens, embeddings.num_embeddings, mean_resizing=mean_resizing
            )
            output_embeddings = self.get_output_embeddings()
            if output_embeddings is not None and self.config.tie_word_embeddings:
                output_embeddings.weight = decoder.embed_tokens.weight
        return embeddings

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, writing a self-contained folder: `config.json` maps every Auto class this
        package supports (`AutoConfig`, `AutoModel`, `AutoModelForSeq2SeqLM`) to the code files saved beside the
        weights, so `from_pretrained(folder, trust_remote_code=True)` works where this package is not installed.
        (transformers itself lists only the class being saved.)"""
        module = "modeling_rnn_seq2seq"
        auto_map = dict(getattr(self.config, "auto_map", None) or {})
        auto_map.update(
            {
                "AutoConfig": "configuration_rnn_seq2seq.RNNSeq2SeqConfig",
                "AutoModel": f"{module}.RNNSeq2SeqModel",
                "AutoModelForSeq2SeqLM": f"{module}.RNNSeq2SeqForConditionalGeneration",
            }
        )
        self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        tokenizer=None,
        model_card_kwargs: dict | None = None,
        commit_message: str | None = None,
        commit_description: str | None = None,
        private: bool | None = None,
        token: str | bool | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        max_shard_size: int | str | None = "50GB",
        **kwargs,
    ):
        """Uploads the model to the Hub: what `save_pretrained` writes (weights, config with `auto_map`, generation
        config, the model's code files) plus this package's model card as `README.md` (transformers' own
        `push_to_hub` would replace it with a generic card). `model_card_kwargs` go to
        `hf_rnn_seq2seq.modelcard_rnn_seq2seq.build_model_card` (metrics, datasets, languages, training command...).
        Pass `tokenizer=` to upload its files in the same commit, so `AutoTokenizer.from_pretrained(repo_id)` works
        too. Load with `AutoModelForSeq2SeqLM.from_pretrained(repo_id, trust_remote_code=True)`."""
        import tempfile

        from huggingface_hub import CommitOperationAdd, HfApi

        from .modelcard_rnn_seq2seq import build_model_card

        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder, max_shard_size=max_shard_size)
            if tokenizer is not None:
                tokenizer.save_pretrained(folder)
            card_kwargs = {"model_name": repo_id.split("/")[-1], **(model_card_kwargs or {}), "repo_id": repo_id}
            build_model_card(self, **card_kwargs).save(os.path.join(folder, "README.md"))
            operations = [
                CommitOperationAdd(path_in_repo=name, path_or_fileobj=os.path.join(folder, name))
                for name in sorted(os.listdir(folder))
            ]
            return api.create_commit(
                repo_id=repo_id,
                operations=operations,
                commit_message=commit_message or "Upload RNNSeq2Seq model",
                commit_description=commit_description,
                revision=revision,
                create_pr=create_pr,
            )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`PreTrainedModel.from_pretrained` (safetensors only: no pickle is ever loaded), with errors that name the
        file: a corrupt or truncated weights file, and weights whose shapes do not fit `config.json` (e.g. a
        vocabulary-size mismatch), which transformers reports only as a table in the log."""
        try:
            model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except (SafetensorError, RuntimeError) as error:
            if isinstance(error, RuntimeError) and "ignore_mismatched_sizes" not in str(error):
                raise
            files = _local_weights_files(pretrained_model_name_or_path)
            where = f"checkpoint '{pretrained_model_name_or_path}' ({', '.join(files) or 'model.safetensors'})"
            if isinstance(error, SafetensorError):
                message = f"Could not read the safetensors weights of {where}: corrupt or truncated file? {error}"
                raise OSError(message) from error
            mismatches = _shape_mismatches(cls, pretrained_model_name_or_path, files, kwargs.get("config"))
            raise ValueError(
                f"The weights of {where} do not fit its config (config.json): {mismatches or error}. The weights and config.json come from different "
                "models, or config.json was edited (vocab_size, embedding_size, hidden_size...). Pass "
                "`ignore_mismatched_sizes=True` to re-initialise the mismatched weights instead."
            ) from error
        loaded = model[0] if isinstance(model, tuple) else model  # (model, loading_info) with output_loading_info=True
        if loaded.config.cpu_quantization:  # from a quantised model, or asked for: cpu_quantization="dynamic_int8"
            loaded.quantize_dynamic_int8()
        return model

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        # generate() must not build a key/value cache for us: the first step gets `cache=None` and the model creates
        # its RNNSeq2SeqCache (forward also ignores any other Cache it is given).
        return False


class RNNSeq2SeqModel(RNNSeq2SeqPreTrainedModel):
    """The bare encoder-decoder: returns the decoder's attentional vectors (no vocabulary projection)."""

    def __init__(self, config: RNNSeq2SeqConfig):
        super().__init__(config)
        config.validate()  # fields may have been edited after the config was built
        self.is_lstm = config.cell_type == "lstm"

        def embedding():
            return nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)

        if config.share_encoder_decoder_embeddings:
            self.shared = embedding()
            encoder_embeddings, decoder_embeddings = self.shared, self.shared
            self._tied_weights_keys = {
                "encoder.embed_tokens.weight": "shared.weight",
                "decoder.embed_tokens.weight": "shared.weight",
            }
        else:
            encoder_embeddings, decoder_embeddings = embedding(), embedding()
        self.encoder = RNNSeq2SeqEncoder(config, encoder_embeddings)
        self.bridge = RNNSeq2SeqBridge(config) if config.bridge != "zeros" else None
        self.decoder = RNNSeq2SeqDecoder(config, decoder_embeddings)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        if self.config.share_encoder_decoder_embeddings:
            self.shared = value
            self.decoder.embed_tokens = value
        self.encoder.embed_tokens = value

    def get_encoder(self, modality: str | None = None) -> RNNSeq2SeqEncoder:
        return self.encoder

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: RNNSeq2SeqEncoderOutput | tuple | None = None,
        cache: RNNSeq2SeqCache | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> RNNSeq2SeqModelOutput | tuple:
        r"""
        input_ids (`torch.LongTensor` of shape `(batch_size, source_length)`):
            Source token ids. Not needed when `encoder_outputs` is given.
        attention_mask (`torch.Tensor` of shape `(batch_size, source_length)`, *optional*):
            1 for real source tokens, 0 for padding (left or right). No row may be all padding.
        decoder_input_ids (`torch.LongTensor` of shape `(batch_size, target_length)`):
            Decoder inputs. With a `cache`, only the new tokens (the state already holds the earlier ones).
        decoder_attention_mask (`torch.Tensor` of shape `(batch_size, target_length)`, *optional*):
            Accepted for API compatibility. The decoder is causal, so right padding of the target never changes the
            outputs at real positions; it is checked for shape only.
        encoder_outputs (`RNNSeq2SeqEncoderOutput` or `tuple`, *optional*):
            Precomputed encoder outputs (as `generate()` passes them).
        cache (`RNNSeq2SeqCache`, *optional*):
            The recurrent state after the previous tokens; updated in place and returned when `use_cache`.
        """
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        use_cache = use_cache if use_cache is not None else self.config.use_cache
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        self._check_quantization()

        if encoder_outputs is None:
            if input_ids is None:
                raise ValueError("Pass `input_ids` (the source) or precomputed `encoder_outputs`.")
            encoder_outputs = self.encoder(
                input_ids, attention_mask, output_hidden_states=output_hidden_states, return_dict=True
            )
        elif not isinstance(encoder_outputs, RNNSeq2SeqEncoderOutput):
            encoder_outputs = self._wrap_encoder_tuple(encoder_outputs)
        encoder_states = encoder_outputs.last_hidden_state  # (B, S, He)
        batch_size, source_length = encoder_states.shape[:2]
        if attention_mask is None:
            padding = encoder_states.new_zeros(batch_size, source_length, dtype=torch.bool)
        else:
            padding = _check_source_mask(attention_mask, batch_size, source_length)  # (B, S) True = padding

        if decoder_input_ids is None:
            raise ValueError("Pass `decoder_input_ids` (or `labels`, from which they are derived).")
        vocab_size, extended_vocab_size = self.config.vocab_size, self.config.extended_vocab_size
        decoder_input_ids = _check_ids("decoder_input_ids", decoder_input_ids, extended_vocab_size)
        if extended_vocab_size > vocab_size:
            # Extended copy ids (a copied source OOV fed back, or a shifted label) are unknown words to the embedding.
            decoder_input_ids = decoder_input_ids.masked_fill(
                decoder_input_ids >= vocab_size, self.config.unk_token_id
            )
        # generate() keeps one copy of each source for its g beams (or returned sequences): decoder rows g·i..g·i+g-1
        # belong to source i (see `_expand_inputs_for_generation`). Otherwise the batches are equal (g = 1).
        source_batch_size, batch_size = batch_size, decoder_input_ids.shape[0]
        group = batch_size // source_batch_size
        if batch_size != group * source_batch_size or group < 1:
            raise ValueError(
                f"`decoder_input_ids` has batch size {batch_size} but the source has {source_batch_size}: they must be "
                "equal (or the decoder batch a multiple, g consecutive rows per source, as generate() makes them)."
            )
        if decoder_attention_mask is not None and (
            decoder_attention_mask.dim() != 2
            or decoder_attention_mask.shape[0] != batch_size
            or decoder_attention_mask.shape[1] < decoder_input_ids.shape[1]
        ):
            # With a cache, generate() passes the new tokens only but the mask of the whole prefix.
            raise ValueError(
                f"`decoder_attention_mask` must have shape (batch_size, target_length) covering `decoder_input_ids` "
                f"{tuple(decoder_input_ids.shape)}, got {tuple(decoder_attention_mask.shape)}."
            )

        if isinstance(cache, RNNSeq2SeqCache):
            if cache.batch_size != batch_size:
                raise ValueError(
                    f"`cache` holds a state for batch size {cache.batch_size}, the inputs have {batch_size}."
                )
            if cache.attention_keys is not None and cache.attention_keys.shape[1] != source_length:
                raise ValueError(
                    f"`cache` was made for a source of length {cache.attention_keys.shape[1]}, the encoder outputs "
                    f"have length {source_length}: a cache belongs to the source it was started with."
                )
            state = [cache.hidden] + ([cache.cell] if self.is_lstm else [])
            input_feed, attention_keys, coverage = cache.input_feed, cache.attention_keys, cache.coverage
        else:  # first step, or any cache that is not ours (e.g. a key/value cache made by generic code)
            cache = None
            state = [
                s.repeat_interleave(group, dim=1) for s in self._initial_state(encoder_outputs, source_batch_size)
            ]
            input_feed = (
                encoder_states.new_zeros(batch_size, self.config.hidden_size) if self.decoder.input_feeding else None
            )
            attention_keys, coverage = None, None
            if self.decoder.attention is not None:
                attention_keys = self.decoder.attention.project_keys(encoder_states)  # (B_src, S, H), once per source
                # a source position the attention hardly reads gets a subnormal gradient: flushed before the products
                flush_denormal_grads(attention_keys)
                flush_denormal_grads(encoder_states)
                coverage = encoder_states.new_zeros(batch_size, source_length)  # (B, S) c^1 = 0

        decoded = self.decoder(
            decoder_input_ids, encoder_states, attention_keys, padding.unsqueeze(1), state, input_feed, coverage
        )
        weights = decoded.alignment  # (B, T, S) or None

        if use_cache:
            if cache is None:
                cache = RNNSeq2SeqCache(
                    decoded.state[0], decoded.state[1] if self.is_lstm else None, decoded.input_feed, attention_keys
                )
            else:
                cache.hidden, cache.input_feed = decoded.state[0], decoded.input_feed
                cache.cell = decoded.state[1] if self.is_lstm else None
            cache.coverage = decoded.next_coverage
            cache.last_attention = None if weights is None else weights[:, -1]
            cache.seen_tokens += decoder_input_ids.shape[1]
        else:
            cache = None

        output = RNNSeq2SeqModelOutput(
            last_hidden_state=decoded.attentional,
            cache=cache,
            decoder_hidden_states=(
                (
                    self.decoder.embed_tokens(decoder_input_ids) if decoded.embeds is None else decoded.embeds,
                    decoded.rnn_outputs,
                    decoded.attentional,
                )
                if output_hidden_states
                else None
            ),
            cross_attentions=(weights.unsqueeze(1),) if output_attentions and weights is not None else None,
            encoder_last_hidden_state=encoder_states,
            encoder_hidden_states=encoder_outputs.hidden_states if output_hidden_states else None,
            alignment=weights,
            p_gen=decoded.p_gen,
            coverage=decoded.coverage,
        )
        return output if return_dict else output.to_tuple()

    def _initial_state(self, encoder_outputs: RNNSeq2SeqEncoderOutput, batch_size: int) -> list[torch.Tensor]:
        if self.bridge is None:  # bridge="zeros"
            zeros = encoder_outputs.last_hidden_state.new_zeros(
                self.config.decoder_layers, batch_size, self.config.hidden_size
            )  # (L, B, H)
            return [zeros, zeros.clone()] if self.is_lstm else [zeros]
        if self.is_lstm and encoder_outputs.final_cell_state is None:
            raise ValueError("`encoder_outputs` of an LSTM encoder must include `final_cell_state`.")
        return self.bridge(encoder_outputs, with_cell=self.is_lstm)

    def _wrap_encoder_tuple(self, encoder_outputs: tuple) -> RNNSeq2SeqEncoderOutput:
        n_states = 3 if self.is_lstm else 2
        if len(encoder_outputs) < n_states:
            raise ValueError(
                f"`encoder_outputs` as a tuple must hold (last_hidden_state, final_hidden_state"
                f"{', final_cell_state' if self.is_lstm else ''}), got {len(encoder_outputs)} element(s)."
            )
        parts = list(encoder_outputs[:n_states]) + ([None] if not self.is_lstm else [])
        return RNNSeq2SeqEncoderOutput(*parts, encoder_outputs[n_states] if len(encoder_outputs) > n_states else None)


# Rows of at most this many values at a time when the losses below work through the (N, V) scores on CPU (2 MB).
_LOSS_CHUNK_VALUES = 1 << 19


def _loss_chunk_rows(scores: torch.Tensor) -> int:
    """How many rows of the (N, V) `scores` the losses take at a time: on CPU a few, so that their temporaries stay
    in cache and no (N, V) temporary is made (a fresh tensor of a few MB costs more than its arithmetic there: the
    kernel maps and zeroes its pages on first touch, ~2 µs per 4 kB page on the benchmark machine); elsewhere all."""
    rows, vocab_size = scores.shape
    return max(1, _LOSS_CHUNK_VALUES // vocab_size) if scores.device.type == "cpu" else max(rows, 1)


def _logsumexp_rows(scores: torch.Tensor) -> torch.Tensor:
    """log Σ_v e^{z_v} of each row of `scores` (N, V) -> (N,)."""
    lse = scores.new_empty(scores.shape[0])
    step = _loss_chunk_rows(scores)
    for start in range(0, scores.shape[0], step):
        torch.logsumexp(scores[start : start + step], dim=-1, out=lse[start : start + step])
    return lse


def _scaled_softmax(scores, lse, scale, out, accumulate: bool) -> torch.Tensor:
    """softmax(z) · scale for `scores` z (N, V) with their `lse` (N,) and `scale` (N,), written into `out` (N, V), or
    added to it with `accumulate`."""
    step = _loss_chunk_rows(scores)
    for start in range(0, scores.shape[0], step):
        now = slice(start, start + step)
        target = None if accumulate else out[now]
        part = torch.sub(scores[now], lse[now].unsqueeze(1), out=target).exp_().mul_(scale[now].unsqueeze(1))
        if accumulate:
            out[now].add_(part)
    return out


def _smoothed_nll(log_p, labels, smoothing: float, vocab_size: int):
    """Each target token's −(1 − ε) log P(y) − ε · mean_{w < V} log P(w) (cross_entropy's label smoothing), for `log_p`
    (..., ≥ V) — or anything that differs from log P by a constant per row, which the caller adds back — and `labels`
    (...) with -100 at ignored tokens. Returns the token losses (...) and what `_add_nll_gradient` needs: the targets
    (an ignored token reads id 0; the caller zeroes its loss) and the valid mask."""
    valid = labels != -100
    targets = labels.masked_fill(~valid, 0)
    token_loss = -(1.0 - smoothing) * log_p.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    if smoothing:
        token_loss = token_loss - smoothing * log_p[..., :vocab_size].mean(-1)
    return token_loss, targets, valid


def _add_nll_gradient(grad, targets, scale, smoothing: float, vocab_size: int) -> None:
    """Adds to `grad` (..., ≥ V) the gradient of `_smoothed_nll` w.r.t. log P, each token's scaled by `scale` (...):
    −(1 − ε) at its label and −ε/V on the V vocabulary ids."""
    grad.scatter_add_(-1, targets.unsqueeze(-1), (-(1.0 - smoothing) * scale).unsqueeze(-1))
    if smoothing:
        grad[..., :vocab_size].sub_((smoothing / vocab_size) * scale.unsqueeze(-1))


def _same_id(source_ids: torch.Tensor) -> torch.Tensor:
    """(B_src, S, S) float, 1 where x_i == x_j, for source ids (B_src, S): which positions share an id."""
    return (source_ids.unsqueeze(2) == source_ids.unsqueeze(1)).float()


class _LogCopyMixture(torch.autograd.Function):
    """log P(w) of the pointer-generator mixture over the (B, T, Vx) output, and with `labels` the summed token loss,
    with a hand-written backward.

    Inputs: `logits` (B, T, V); `log_p_gen`, `log_p_copy` (B, T, 1); `copy_mass` (B, T, S), the attention on each
    source position's id, Σ_{j: x_j = x_i} a_{t,j}; `index` (B, T, S), the source ids; `first` (B, 1, S), True at the
    first occurrence of each source id; `extra_ids` = K; `labels` (B, T) with -100 at ignored tokens, or None; the
    label smoothing ε.

    Every id gets log p_gen + log P_vocab(w) = z_w − (lse − log p_gen), one pass over the scores; the ids of the
    source are then overwritten with the whole mixture, log(p_gen P_vocab(x_i) + (1 − p_gen) copy_mass_i), computed
    on (B, T, S) only. The loss is −(1 − ε) log P(y) − ε · mean_{w < V} log P(w), summed over the target tokens.
    Taking it here, not through `F.nll_loss` on the output, lets the backward build the gradient of the scores in
    one (B, T, Vx) tensor, in place from there on. With the scores, a training step makes three tensors of that size
    (the scores, the output, that gradient), where the previous version of this function, with `F.nll_loss`, made
    seven (eight with extended ids): its own log_softmax, the padded output, nll_loss's dense gradient and a copy of
    it, a softmax, a flushed copy. Copy + coverage with 8 000 words: 350 → 300 ms per training step (CPU).
    """

    @staticmethod
    def forward(ctx, logits, log_p_gen, log_p_copy, copy_mass, index, first, extra_ids, labels, smoothing):
        """Also called directly, with `ctx=None` (and `first=None`), where no backward follows."""
        batch_size, target_length, vocab_size = logits.shape
        scores = logits.reshape(-1, vocab_size)  # (B·T, V)
        lse = _logsumexp_rows(scores).view(batch_size, target_length, 1)
        out = logits.new_empty(batch_size, target_length, vocab_size + extra_ids)  # (B, T, Vx)
        torch.sub(logits, lse - log_p_gen, out=out[..., :vocab_size])  # log(p_gen · P_vocab(w))
        if extra_ids:
            out[..., vocab_size:] = _LOG_TINY  # extended ids have no vocabulary probability: only copy mass
        generated = out.gather(-1, index)  # (B, T, S)
        copied = log_p_copy + copy_mass.clamp_min(_TINY).log()  # (B, T, S) log((1 − p_gen) · copy_mass)
        mixture = torch.logaddexp(generated, copied)  # (B, T, S) log P(x_i)
        out.scatter_(-1, index, mixture)  # a repeated id gets the same value from each of its positions
        loss = targets = valid = None
        if labels is not None:
            token_loss, targets, valid = _smoothed_nll(out, labels, smoothing, vocab_size)  # (B, T)
            loss = token_loss.masked_fill(~valid, 0.0).sum()
        if ctx is not None and any(ctx.needs_input_grad):
            ctx.set_materialize_grads(False)
            ctx.save_for_backward(logits, lse, index, first, generated, copied, mixture, copy_mass, targets, valid)
            ctx.smoothing, ctx.output_width = smoothing, out.shape[-1]
        return out, loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, grad_loss):
        logits, lse, index, first, generated, copied, mixture, copy_mass, targets, valid = ctx.saved_tensors
        batch_size, target_length, vocab_size = logits.shape
        # ∂/∂out: the caller's gradient of the output, plus the loss's: −(1 − ε) at each label, −ε/V on the V ids
        if grad_out is None:
            grad = logits.new_zeros(batch_size, target_length, ctx.output_width)  # (B, T, Vx)
        else:
            grad = grad_out.clone(memory_format=torch.contiguous_format)
        if grad_loss is not None and targets is not None:
            scale = valid.to(grad.dtype) * grad_loss  # (B, T)
            _add_nll_gradient(grad, targets, scale, ctx.smoothing, vocab_size)
        grad_mixture = grad.gather(-1, index) * first  # (B, T, S): each output id's gradient counted once
        grad_generated = grad_mixture * torch.exp(generated - mixture)  # ∂ logaddexp(g, c) / ∂g = e^{g − m}
        grad_copied = grad_mixture * torch.exp(copied - mixture)
        # ∂/∂ log(p_gen P_vocab): `grad`, except at the source ids, whose entries came from the mixture (in place)
        grad_vocab = grad.scatter_(-1, index, 0.0).scatter_add_(-1, index, grad_generated)[..., :vocab_size]
        grad_log_p_gen = grad_vocab.sum(-1, keepdim=True)  # (B, T, 1)
        # log_softmax's backward: ∂/∂z = g − softmax(z) · Σ g, in place, the softmax a few rows at a time
        rows = grad.view(-1, ctx.output_width)[:, :vocab_size]  # grad_vocab as (B·T, V), row stride Vx
        _scaled_softmax(logits.view(-1, vocab_size), lse.view(-1), -grad_log_p_gen.view(-1), rows, accumulate=True)
        grad_logits = flush_denormals(grad_vocab, inplace=True)  # P(w)·Σg is subnormal for words ruled out
        grad_log_p_copy = grad_copied.sum(-1, keepdim=True)
        grad_copy_mass = torch.where(copy_mass > _TINY, grad_copied / copy_mass.clamp_min(_TINY), 0.0)
        return grad_logits, grad_log_p_gen, grad_log_p_copy, grad_copy_mass, None, None, None, None, None


class _TokenCrossEntropy(torch.autograd.Function):
    """Σ over the target tokens of the cross-entropy with label smoothing ε, as `F.cross_entropy(logits, labels,
    ignore_index=-100, reduction="sum", label_smoothing=ε)`, with a hand-written backward that makes one (N, V) tensor
    where torch's makes three (log_softmax's output, nll_loss's gradient, log_softmax's gradient).

    Inputs: `logits` (N, V), `labels` (N,) with -100 at ignored tokens. With lse = log Σ_v e^{z_v}:

        loss_n = lse − (1 − ε) z_{y_n} − ε · mean_v z_v          ∂loss_n/∂z = softmax(z) − (1 − ε) onehot(y_n) − ε/V

    Peer configuration, batch 64 of 23–25 tokens, ms per training step on CPU: 8 000 words 253–274 → 234; 32 000 words
    760–768 → 628–659 and 182 MB less peak memory (fewer fresh tensors: `_loss_chunk_rows`).
    """

    @staticmethod
    def forward(ctx, logits, labels, smoothing):
        lse = _logsumexp_rows(logits)  # (N,)
        token_loss, targets, valid = _smoothed_nll(logits, labels, smoothing, logits.shape[1])  # on z = log P + lse
        ctx.save_for_backward(logits, lse, targets, valid)
        ctx.smoothing = smoothing
        return (token_loss + lse).masked_fill(~valid, 0.0).sum()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss):
        logits, lse, targets, valid = ctx.saved_tensors
        scale = valid.to(logits.dtype) * grad_loss  # (N,) the loss gradient of each token, 0 if ignored
        grad = _scaled_softmax(logits, lse, scale, torch.empty_like(logits), accumulate=False)  # (N, V)
        _add_nll_gradient(grad, targets, scale, ctx.smoothing, logits.shape[1])  # ∂/∂z = softmax·scale + ∂/∂log P
        return grad, None, None


class CoveragePenaltyLogitsProcessor(LogitsProcessor):
    r"""
    The coverage penalty of GNMT (Wu et al. 2016, eq. 14) for beam search with [`RNNSeq2SeqForConditionalGeneration`]:

        cp(x; y) = β · Σ_i log(min(Σ_t a_{t,i}, 1))      (over the real source positions i)

    cp is 0 for a hypothesis whose attention has covered every source token at least once, and increasingly negative
    the more of the source it leaves unattended, so it favours translations that leave nothing out.

    Beam search sums the processed scores of a hypothesis' steps, so at step t this processor adds the change of cp
    caused by that step's attention, cp(x; y_≤t) − cp(x; y_<t), to every token of the hypothesis' row: a hypothesis'
    running score is log P(y_≤t | x) + cp(x; y_≤t), and a finished one scores log P(y | x) + cp(x; y). transformers'
    `length_penalty` then divides the whole score by `length ** length_penalty` (GNMT divides the log-probability only).
    Greedy search and sampling are unaffected (a constant per row changes neither the argmax nor the softmax).

    Pass `coverage_penalty=β` to `generate()` (or set it in the generation config); the model creates this processor
    and feeds it each step's attention. An instance put in `logits_processor` by hand is fed the same way.
    """

    rows_are_independent = True  # each row's penalty comes from its own attention (beam search may drop rows)

    def __init__(self, beta: float):
        if not isinstance(beta, (int, float)) or isinstance(beta, bool) or beta < 0:
            raise ValueError(f"`coverage_penalty` (β) must be a number >= 0, got {beta!r}.")
        self.beta = float(beta)
        self._delta = None  # (B,) change of cp at the current step
        self._steps = 0

    def observe(self, coverage: torch.Tensor, last_attention: torch.Tensor, source_mask: torch.Tensor | None) -> None:
        """Reads the cache after a step: `coverage` = Σ of all attention so far (B, S), `last_attention` (B, S)."""
        if source_mask is None:
            mask = torch.ones_like(coverage)  # (B, S)
        else:  # generate() keeps one source row for each sentence's beams
            mask = source_mask.to(coverage.dtype).repeat_interleave(coverage.shape[0] // source_mask.shape[0], dim=0)

        def penalty(total):  # (B, S) -> (B,)
            return self.beta * (total.clamp(min=torch.finfo(total.dtype).tiny, max=1.0).log() * mask).sum(-1)

        before = 0.0 if self._steps == 0 else penalty(coverage - last_attention)
        self._delta = penalty(coverage) - before
        self._steps += 1

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._delta is None:
            raise ValueError(
                "CoveragePenaltyLogitsProcessor needs the model's attention: pass `coverage_penalty=β` to "
                "RNNSeq2SeqForConditionalGeneration.generate() (with use_cache=True)."
            )
        if self._delta.shape[0] != scores.shape[0]:
            raise ValueError(f"Coverage penalty for {self._delta.shape[0]} rows, scores have {scores.shape[0]}.")
        return scores + self._delta.to(scores.dtype).unsqueeze(-1)


class _GenerationObserver:
    """Reads each step's model outputs during one `generate()` call: per-step p_gen and coverage for the returned
    output, and the attention for coverage-penalty processors."""

    def __init__(self, penalties: list[CoveragePenaltyLogitsProcessor], trace: bool):
        self.penalties, self.trace = penalties, trace
        self.p_gen, self.coverage = [], []

    def observe(self, outputs: "RNNSeq2SeqLMOutput", model_kwargs: dict) -> None:
        if self.trace:
            self.p_gen.append(outputs.p_gen)
            self.coverage.append(outputs.coverage)
        if self.penalties:
            cache = model_kwargs.get("cache")
            if not isinstance(cache, RNNSeq2SeqCache):
                raise ValueError("The coverage penalty reads the recurrent state: generate with `use_cache=True`.")
            for penalty in self.penalties:
                penalty.observe(cache.coverage, cache.last_attention, model_kwargs.get("attention_mask"))

    def annotate(self, result):
        """Adds `p_gen` / `coverage` (tuples with one entry per step, like `cross_attentions`) to generate's output."""
        if self.trace and isinstance(result, ModelOutput):
            if self.p_gen and self.p_gen[0] is not None:
                result["p_gen"] = tuple(self.p_gen)  # each (B·beams, T_step)
            if self.coverage and self.coverage[0] is not None:
                result["coverage"] = tuple(self.coverage)  # each (B·beams, T_step, S)
        return result


class RNNSeq2SeqForConditionalGeneration(RNNSeq2SeqPreTrainedModel, GenerationMixin):
    """The encoder-decoder with its vocabulary projection (and copy mixture) and loss; use it with `generate()` and
    `Seq2SeqTrainer`."""

    # The loss is normalised by `num_items_in_batch` when the Trainer passes it, so gradient accumulation and
    # multi-process training average over target tokens exactly like one big batch.
    accepts_loss_kwargs = True

    def __init__(self, config: RNNSeq2SeqConfig):
        super().__init__(config)
        self.model = RNNSeq2SeqModel(config)
        output_size = config.hidden_size
        if config.tie_word_embeddings and config.embedding_size != config.hidden_size:
            self.output_projection = nn.Linear(config.hidden_size, config.embedding_size, bias=False)  # H -> E
            output_size = config.embedding_size
        else:
            self.output_projection = None
        self.lm_head = nn.Linear(output_size, config.vocab_size, bias=False)
        source = (
            "model.shared.weight" if config.share_encoder_decoder_embeddings else "model.decoder.embed_tokens.weight"
        )
        self._tied_weights_keys = {"lm_head.weight": source}
        self._generation_observer = None
        self.post_init()
        if self.generation_config.max_length is None and self.generation_config.max_new_tokens is None:
            self.generation_config.max_length = DEFAULT_MAX_LENGTH

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()  # (transformers' generic lookup tries several names, ~12 µs a step)

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head = new_embeddings

    def get_encoder(self, modality: str | None = None) -> RNNSeq2SeqEncoder:
        return self.model.encoder

    def generate(self, inputs=None, generation_config=None, **kwargs):
        """`GenerationMixin.generate`, with these additions:

        - `coverage_penalty=β` (a keyword, or an attribute of the generation config): GNMT's coverage penalty for beam
          search, see [`CoveragePenaltyLogitsProcessor`]. `length_penalty` is transformers' own: the final score of a
          beam hypothesis is its summed score divided by `length ** length_penalty`.
        - With `output_attentions=True, return_dict_in_generate=True`, the output also holds `p_gen` (copy models) and
          `coverage` (coverage models): tuples with one tensor per step, beside `cross_attentions` (the attention).
          Like `cross_attentions`, beam-search entries are per running beam; use `beam_indices` to follow a hypothesis.
        - Outputs may run to `DEFAULT_MAX_LENGTH` tokens, not transformers' 20, when no length limit is set anywhere.
          New models store that limit in their generation config (so `Seq2SeqTrainer` and saved checkpoints see it);
          here it also covers a generation config without one, and a call that passes only `max_new_tokens`
          overrides the stored default without transformers' "both `max_new_tokens` and `max_length` set" warning.
        - With `copy_extended_vocab`, pass the source's `extended_input_ids`: generated ids `>= vocab_size` are copied
          source OOVs (decode them with `hf_rnn_seq2seq.batch_decode_with_source_oovs`).
        """
        stored = self.generation_config
        config = generation_config if generation_config is not None else stored
        beta = kwargs.pop("coverage_penalty", None)
        if beta is None:
            beta = getattr(config, "coverage_penalty", None)
        processors = LogitsProcessorList(kwargs.pop("logits_processor", None) or [])
        if beta:
            if self.config.attention_type == "none":
                raise ValueError("`coverage_penalty` sums the attention, and this model has `attention_type='none'`.")
            processors.append(CoveragePenaltyLogitsProcessor(beta))
        penalties = [p for p in processors if isinstance(p, CoveragePenaltyLogitsProcessor)]
        if penalties and kwargs.get("use_cache", config.use_cache) is False:
            raise ValueError("The coverage penalty reads the recurrent state: generate with `use_cache=True`.")
        trace = bool(kwargs.get("output_attentions", config.output_attentions)) and bool(
            kwargs.get("return_dict_in_generate", config.return_dict_in_generate)
        )

        if all(kwargs.get(key) is None for key in ("max_length", "max_new_tokens")) and all(
            c.max_length is None and c.max_new_tokens is None for c in (generation_config, stored) if c is not None
        ):
            kwargs["max_length"] = DEFAULT_MAX_LENGTH
        # our own stored default must not count as a user-set max_length when the call sets max_new_tokens
        clear_default = (
            kwargs.get("max_new_tokens") is not None
            and kwargs.get("max_length") is None
            and stored.max_length == DEFAULT_MAX_LENGTH
        )
        observer = _GenerationObserver(penalties, trace) if penalties or trace else None
        self._generation_observer = observer
        if clear_default:
            stored.max_length = None
        try:
            result = super().generate(inputs, generation_config, logits_processor=processors, **kwargs)
        finally:
            self._generation_observer = None
            if clear_default:
                stored.max_length = DEFAULT_MAX_LENGTH
        return result if observer is None else observer.annotate(result)

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        next_sequence_length: int | None = None,
        cache: RNNSeq2SeqCache | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        is_first_iteration: bool | None = False,
        **kwargs,
    ) -> dict:
        """`GenerationMixin.prepare_inputs_for_generation` for an encoder-decoder, without the parts a recurrent
        decoder never uses: position ids, the 4-D masks of compilable caches, and the `cache_position` check that
        looks up `forward`'s signature at every step for any model registered with the Auto classes (in all, ~6 % of
        a greedy or beam-5 CPU decode here). The inputs are the same: the last `next_sequence_length` decoder
        ids, the cache, the source mask, and every other generation kwarg unchanged (`labels` excepted), moved to
        the model's device. `inputs_embeds` is dropped, as transformers drops it for encoder-decoders."""
        if next_sequence_length is not None:
            input_ids = input_ids[:, -next_sequence_length:]
        model_inputs = {"decoder_input_ids": input_ids.contiguous()}
        if cache is not None:
            model_inputs["cache"] = cache
        decoder_attention_mask = kwargs.pop("decoder_attention_mask", None)
        if decoder_attention_mask is not None:
            model_inputs["decoder_attention_mask"] = decoder_attention_mask
        if attention_mask is not None:
            model_inputs["attention_mask"] = attention_mask
        for key, value in kwargs.items():
            if key not in ("labels", "next_sequence_length") and key not in model_inputs:
                model_inputs[key] = value
        device = self.get_input_embeddings().weight.device  # never quantised (int8 replaces Linear and LSTM)
        if device.type != "meta" and input_ids.device != device:
            model_inputs = move_to_device(model_inputs, device)
        return model_inputs

    def _update_model_kwargs_for_generation(self, outputs, model_kwargs, is_encoder_decoder=False, num_new_tokens=1):
        model_kwargs = super()._update_model_kwargs_for_generation(
            outputs, model_kwargs, is_encoder_decoder=is_encoder_decoder, num_new_tokens=num_new_tokens
        )
        if self._generation_observer is not None:  # called once per step, right after the forward
            self._generation_observer.observe(outputs, model_kwargs)
        return model_kwargs

    def _expand_inputs_for_generation(self, expand_size=1, is_encoder_decoder=False, input_ids=None, **model_kwargs):
        """transformers copies the encoder outputs and the source mask `expand_size` times (once per beam or returned
        sequence). Here they stay one per source: the model reads the g rows of a source's beams against one copy
        (`RNNSeq2SeqModel.forward`), so beam search neither copies the encoder states nor re-reads g copies of them
        at every step (the attention keys are projected once per source, too). Everything else is expanded as
        usual."""
        shared = {key: model_kwargs.pop(key) for key in ("encoder_outputs", "attention_mask") if key in model_kwargs}
        input_ids, model_kwargs = super()._expand_inputs_for_generation(
            expand_size=expand_size, is_encoder_decoder=False, input_ids=input_ids, **model_kwargs
        )
        return input_ids, {**model_kwargs, **shared}

    def _beam_search(
        self, input_ids, logits_processor, stopping_criteria, generation_config, synced_gpus=False, **model_kwargs
    ):
        """Beam search (and beam sampling) with transformers' results in fewer operators per step: see
        `generation_rnn_seq2seq.py`. Processes that must keep stepping together (`synced_gpus`, for DeepSpeed ZeRO-3
        and FSDP) use transformers' own, which implements that protocol."""
        if synced_gpus or generation_config.low_memory:
            return super()._beam_search(
                input_ids, logits_processor, stopping_criteria, generation_config, synced_gpus, **model_kwargs
            )
        return beam_search(self, input_ids, logits_processor, stopping_criteria, generation_config, **model_kwargs)

    def _sample(
        self,
        input_ids,
        logits_processor,
        stopping_criteria,
        generation_config,
        synced_gpus=False,
        streamer=None,
        **model_kwargs,
    ):
        """Greedy decoding with ids as the only output drops the rows that have ended from the batch
        (`generation_rnn_seq2seq.greedy_search`: the same ids, fewer rows to run); everything else (sampling,
        streaming, per-step outputs, `synced_gpus`) is transformers' own."""
        if not synced_gpus and uses_greedy_search(
            model_kwargs, generation_config, logits_processor, stopping_criteria, streamer
        ):
            return greedy_search(
                self, input_ids, logits_processor, stopping_criteria, generation_config, **model_kwargs
            )
        return super()._sample(
            input_ids, logits_processor, stopping_criteria, generation_config, synced_gpus, streamer, **model_kwargs
        )

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: RNNSeq2SeqEncoderOutput | tuple | None = None,
        cache: RNNSeq2SeqCache | None = None,
        use_cache: bool | None = None,
        labels: torch.LongTensor | None = None,
        extended_input_ids: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        decoder_inputs_embeds: torch.FloatTensor | None = None,
    ) -> RNNSeq2SeqLMOutput | tuple:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, target_length)`, *optional*):
            Target ids; -100 marks positions the loss ignores. When `decoder_input_ids` is absent it is `labels`
            shifted right (see `prepare_decoder_input_ids_from_labels`). With `copy_extended_vocab` they may hold
            extended ids (`vocab_size + i` for the example's i-th source OOV).
        extended_input_ids (`torch.LongTensor` of shape `(batch_size, source_length)`, *optional*):
            With `copy_extended_vocab`: the source with its out-of-vocabulary tokens given their extended ids (equal
            to `input_ids` elsewhere; see `hf_rnn_seq2seq.prepare_copy_inputs`). The copy mechanism scatters the
            attention onto these ids. Without it, the source OOVs are copied as `unk_token_id`.
        num_items_in_batch (`int` or `torch.Tensor`, *optional*):
            Number of target tokens in the whole (accumulated, all-process) batch, as `Trainer` passes it. The loss
            is then the summed token loss divided by it; otherwise the mean over this batch's target tokens.
        inputs_embeds, decoder_inputs_embeds:
            Accepted so that generic wrappers (e.g. PEFT's `PeftModelForSeq2SeqLM`) can pass them as `None`; the model
            reads token ids (the copy mechanism needs them), so a tensor here is an error.

        Returns `RNNSeq2SeqLMOutput` with `logits` of shape `(batch_size, target_length, Vx)`: unnormalised scores over
        the vocabulary (`Vx = vocab_size`), or with `use_copy` the **log-probabilities** of the copy mixture (`Vx =
        vocab_size + max_source_oovs` with an extended copy vocabulary; an id that can be neither generated nor copied
        gets log(tiny), about -87). Also the recurrent state under `cache`; with `output_attentions=True` the
        alignment matrices under `cross_attentions` (a one-element tuple of shape `(batch_size, 1, target_length,
        source_length)`), and `p_gen` and `coverage` when the model has them.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        if inputs_embeds is not None or decoder_inputs_embeds is not None:
            raise ValueError(
                "RNNSeq2SeqForConditionalGeneration reads token ids, not embeddings: pass `input_ids` and "
                "`decoder_input_ids` (or `labels`) instead of `inputs_embeds` / `decoder_inputs_embeds`."
            )
        if extended_input_ids is not None and not self.config.copy_extended_vocab:
            raise ValueError(
                "`extended_input_ids` is only used by a copy model with an extended vocabulary "
                "(`use_copy=True, copy_extended_vocab=True`); this model has none."
            )
        if labels is not None:
            labels = _check_ids("labels", labels, self.config.extended_vocab_size, allow_ignore_index=True)
            if decoder_input_ids is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
            elif decoder_input_ids.shape != labels.shape:
                raise ValueError(
                    f"`labels` {tuple(labels.shape)} and `decoder_input_ids` {tuple(decoder_input_ids.shape)} must "
                    "have the same shape: label t is the target for decoder input t."
                )
            use_cache = False
        elif (
            self.training and torch.is_grad_enabled() and (self.config.use_coverage or self.config.copy_extended_vocab)
        ):
            logger.warning_once(
                "Training forward pass without `labels`: the loss is computed outside the model (e.g. by Trainer's "
                "`label_smoothing_factor`), so the coverage loss is left out and label smoothing would also spread "
                "mass over the unused extended-vocabulary ids. Use the model's own `config.label_smoothing` instead."
            )

        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            cache=cache,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        hidden = outputs.last_hidden_state  # (B, T, H)
        if self.output_projection is not None:
            hidden = self.output_projection(hidden)  # (B, T, E)
        logits = self._output_logits(hidden)  # (B, T, V)
        copy_loss = None
        if self.config.use_copy:
            source_ids, same_id = self._copy_source(
                input_ids, extended_input_ids, encoder_outputs, outputs.alignment, outputs.cache
            )
            logits, copy_loss = self._copy_mixture(  # (B, T, Vx) log P, and the token loss with labels
                logits, outputs.p_gen, outputs.alignment, source_ids, labels, same_id
            )

        loss = None
        if labels is not None:
            loss = self._loss(logits, labels, num_items_in_batch, outputs.alignment, outputs.coverage, copy_loss)

        output = RNNSeq2SeqLMOutput(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            decoder_hidden_states=outputs.decoder_hidden_states,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            p_gen=outputs.p_gen if output_attentions else None,
            coverage=outputs.coverage if output_attentions else None,
        )
        return output if return_dict else output.to_tuple()

    def _output_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """`lm_head(hidden)`; in a generation step (inference, few rows), from a K-major copy of its weight kept
        between calls (`kmajor_weights`: 30 rows over 8 000 words, 1.36 -> 0.98 ms on CPU); not for outputs over
        `_KMAJOR_MAX_VALUES` weights (16 k words at H = 256), whose copy would cost more memory than it is worth."""
        head = self.lm_head
        if torch.is_grad_enabled() or not kmajor_applies([head.weight], [head], hidden.shape[:-1].numel()):
            return head(hidden)
        kept = self.model.decoder._derived.get("lm_head", [head.weight], lambda: kmajor_weights({"w": head.weight}))
        return head(hidden) if kept is None else _linear(head, hidden, kept, "w")

    def _copy_source(self, input_ids, extended_input_ids, encoder_outputs, alignment, cache):
        """The checked source ids (B_src, S) and their "same id" matrix (B_src, S, S) for the copy mixture. They
        depend on the source only: kept in the `cache` and used again while a step is given the very same id tensors
        (generate() gives each step the same ones until its batch changes), else made now (and kept)."""
        given = (extended_input_ids, input_ids, getattr(encoder_outputs, "source_ids", None))
        kept = getattr(cache, "copy_source", None)
        if kept is not None and all(a is b for a, b in zip(kept[0], given, strict=True)):
            return kept[1:]
        source_ids = self._copy_source_ids(input_ids, extended_input_ids, encoder_outputs, alignment)
        source_ids = source_ids.to(alignment.device)
        same_id = _same_id(source_ids)
        if isinstance(cache, RNNSeq2SeqCache):
            cache.copy_source = (given, source_ids, same_id)
        return source_ids, same_id

    def _copy_source_ids(self, input_ids, extended_input_ids, encoder_outputs, alignment) -> torch.Tensor:
        """The ids the attention is scattered onto: `extended_input_ids`, else the source ids, checked; one row per
        source, which g consecutive decoder rows (generate()'s beams) may share."""
        batch_size, _, source_length = alignment.shape
        vocab_size = self.config.vocab_size
        if extended_input_ids is not None:
            ids = _check_ids("extended_input_ids", extended_input_ids, self.config.extended_vocab_size)
            if tuple(ids.shape) != (batch_size, source_length):
                raise ValueError(
                    f"`extended_input_ids` must have the source's shape ({batch_size}, {source_length}), got "
                    f"{tuple(ids.shape)}."
                )
            if input_ids is not None:
                expected = torch.where(ids < vocab_size, ids, self.config.unk_token_id)
                if not torch.equal(expected, input_ids.to(ids.device)):
                    raise ValueError(
                        "`extended_input_ids` must equal `input_ids` except where `input_ids` is `unk_token_id`, which "
                        f"may hold an extended id >= vocab_size ({vocab_size}); they disagree. Build both with "
                        "`hf_rnn_seq2seq.prepare_copy_inputs`."
                    )
            return ids
        if input_ids is not None:
            return _check_ids("input_ids", input_ids, vocab_size)
        source_ids = getattr(encoder_outputs, "source_ids", None)
        if source_ids is None:
            raise ValueError(
                "The copy mechanism needs the source token ids: pass `input_ids` (or `extended_input_ids`) with "
                "`encoder_outputs`, or encoder outputs made by this model's encoder (they carry `source_ids`)."
            )
        return source_ids  # (B_src, S): generate()'s beams share their source's row (`_copy_mixture`)

    def _copy_mixture(self, logits, p_gen, alignment, source_ids, labels=None, same_id=None):
        """log P(w) of the pointer-generator mixture, over the V vocabulary ids (+ K extended ids), and with `labels`
        the summed token loss −log P(y) (with the config's label smoothing; None without labels):

            P(w) = p_gen · P_vocab(w) + (1 − p_gen) · Σ_{i: x_i = w} a_{t,i}       (See et al. 2017, eq. 9)

        e.g. source ids x = [7, 9, 7] with a_t = [0.5, 0.2, 0.3]: id 7 gets copy mass (1 − p_gen)·0.8, id 9 gets
        (1 − p_gen)·0.2. Padding has a_{t,i} = 0 and so passes on none; an extended id that no source token holds
        gets probability 0, written log(tiny) ≈ −87. Computed in log space (see `_LogCopyMixture`), so no log of a
        probability that may be 0 is ever taken over the vocabulary.
        """
        batch_size, target_length, source_length = alignment.shape
        p_gen = p_gen.float().unsqueeze(-1)  # (B, T, 1)
        log_p_gen, log_p_copy = p_gen.clamp_min(_TINY).log(), (1.0 - p_gen).clamp_min(_TINY).log()
        source_ids = source_ids.to(logits.device)  # (B_src, S); B = g · B_src, g consecutive rows per source
        group = batch_size // source_ids.shape[0]
        same_id = _same_id(source_ids) if same_id is None else same_id
        # (B, T, S): Σ_{j: x_j = x_i} a_{t,j}, for each source position i; a source's g rows as g·T queries
        copy_mass = (alignment.float().reshape(-1, group * target_length, source_length) @ same_id).view_as(alignment)
        if group > 1:
            source_ids = source_ids.repeat_interleave(group, dim=0)
        index = source_ids.unsqueeze(1).expand(batch_size, target_length, source_length)  # (B, T, S)
        extra_ids = self.config.extended_vocab_size - self.config.vocab_size
        labels = None if labels is None else labels.to(logits.device)
        smoothing = self.config.label_smoothing
        inputs = (logits.float(), log_p_gen, log_p_copy, copy_mass)
        if not (torch.is_grad_enabled() and any(x.requires_grad for x in inputs)):  # no backward (generation)
            return _LogCopyMixture.forward(None, *inputs, index, None, extra_ids, labels, smoothing)
        first = (same_id.tril(diagonal=-1).sum(-1) == 0).unsqueeze(1)  # (B_src, 1, S): no x_j == x_i before i
        first = first.repeat_interleave(group, dim=0) if group > 1 else first  # only the backward reads it
        return _LogCopyMixture.apply(*inputs, index, first, extra_ids, labels, smoothing)

    def _loss(self, logits, labels, num_items_in_batch, alignment, coverage, copy_loss=None):
        """Token NLL (with the config's label smoothing) plus the weighted coverage loss, summed over the target
        tokens and divided by their number. A copy model's token loss comes from its mixture (`copy_loss`)."""
        labels = labels.to(logits.device)
        if self.config.use_copy:
            loss_sum = copy_loss
        else:  # F.cross_entropy(..., ignore_index=-100, reduction="sum"), with fewer (B·T, V) tensors
            loss_sum = _TokenCrossEntropy.apply(
                logits.flatten(0, 1).float(), labels.flatten(), self.config.label_smoothing
            )
        if self.config.use_coverage and self.config.coverage_loss_weight > 0:
            # covloss_t = Σ_i min(a_{t,i}, c^t_i)  (See et al. 2017, eq. 12), added with weight λ to each token's loss
            coverage_loss = torch.minimum(alignment, coverage).sum(-1)  # (B, T)
            loss_sum = loss_sum + self.config.coverage_loss_weight * coverage_loss[labels != -100].float().sum()
        if num_items_in_batch is None:
            num_items_in_batch = (labels != -100).sum().clamp(min=1)
        if isinstance(num_items_in_batch, torch.Tensor):
            num_items_in_batch = num_items_in_batch.to(loss_sum.device)
        return loss_sum / num_items_in_batch


__all__ = [
    "CoveragePenaltyLogitsProcessor",
    "RNNSeq2SeqCache",
    "RNNSeq2SeqEncoderOutput",
    "RNNSeq2SeqForConditionalGeneration",
    "RNNSeq2SeqLMOutput",
    "RNNSeq2SeqModel",
    "RNNSeq2SeqModelOutput",
    "RNNSeq2SeqPreTrainedModel",
    "shift_tokens_right",
]
