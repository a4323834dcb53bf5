# Copyright 2026 The hf-rnn-seq2seq authors. Licensed under the Apache License, Version 2.0.
"""Recurrences with a hand-written backward: the decoder's input-feeding loop (Luong et al. 2015, §3.3) and, at the
end of this file, the encoder's LSTM over packed rows on CPU.

With input feeding, step t of the decoder reads h̃_{t-1}, the attentional vector of step t-1, so the T steps of a
target cannot run as one RNN call: they loop. Left to autograd, the loop's backward is a few hundred small nodes per
step, each weight's gradient is T small matrix products summed one by one, and the gradients of the encoder states
are accumulated T times. `InputFeedingRecurrence` runs the same forward (the cells and `RNNSeq2SeqAttention.forward`
below are the code generation uses) and a backward through time written out: per step only the products that carry
the gradient to step t-1; every weight gradient, and the gradients of the attention keys and values, as ONE matrix
product over all B·T rows after the loop. `tests/test_recurrence_rnn_seq2seq.py` checks it against autograd through
the same forward, for every cell, attention, coverage, layer count and dropout setting.

Shapes follow the legend of `modeling_rnn_seq2seq.py`; G is the number of gates (4 for LSTM, 3 for GRU).
One step, for decoder layers k = 0..L-1 (x⁰_t = [emb(y_t); h̃_{t-1}], xᵏ_t = dropout(hᵏ⁻¹_t)):

    LSTM:  [i f g o] = W_ih xᵏ_t + b_ih + W_hh hᵏ_{t-1} + b_hh
           cᵏ_t = σ(f) ⊙ cᵏ_{t-1} + σ(i) ⊙ tanh(g),   hᵏ_t = σ(o) ⊙ tanh(cᵏ_t)
    GRU:   r = σ(W_ir x + b_ir + W_hr h + b_hr),  z = σ(W_iz x + b_iz + W_hz h + b_hz)
           n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),   hᵏ_t = (1 − z) ⊙ n + z ⊙ hᵏ_{t-1}
    attention on s_t = h^{L-1}_t (see RNNSeq2SeqAttention): a_t, c_t, h̃_t = tanh(W_c [c_t; s_t]),
    coverage c^{t+1} = c^t + a_t, and h̃_t after dropout is both the step's output and the next step's input feed.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# Additive attention's z_t = tanh(…) (B, T, S, H) are kept for the backward up to this many values (256 MB in float32);
# above it the backward recomputes them, one step at a time.
_KEEP_TANH_MAX = 1 << 26

# K-major copies of the step weights (`kmajor_weights`) are used for steps of at most this many rows (on this CPU's
# MKL they win up to ~100 rows, tie at 150-200 and lose from 256: 1 905 against 2 132 µs for 256 × 512 · 512 × 1024),
# and only while they hold at most this many values in all (16 MB in float32, kept beside the weights).
_KMAJOR_MAX_ROWS = 200
_KMAJOR_MAX_VALUES = 1 << 22


def flush_denormals(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """`x` with its subnormal values (0 < |x| < finfo.tiny, about 1.2e-38 in float32; ±finfo.tiny itself too) set to
    0, on CPU; elsewhere, and in float16 (which CPUs compute in float32, where its subnormals are normal), `x` itself.

    x86 CPUs compute on subnormals through a slow microcode path, so a product that reads many of them takes several
    times longer, and a model that learns makes many: a sharp attention or output distribution has probabilities
    like e^{-90}, and so do the gradients that flow through them. Training a copy model slowed down ~2.5× as it
    learned (copyrev, batches of ~1 600 target tokens: 300 -> 750 ms a step). Flushing changes no value by more than
    finfo.tiny. The attention weights and the gradients through them are flushed where they are made, and so is the
    copy mixture's gradient of the logits. A plain model's logits gradient (`_TokenCrossEntropy`) is not: measured
    on the benchmark models it held too few subnormals to pay for a pass over (B, T, V). With `inplace`, `x` itself
    is changed (no new tensor)."""
    if x.device.type != "cpu" or x.dtype == torch.float16:
        return x
    tiny = torch.finfo(x.dtype).tiny
    if inplace:
        return torch.hardshrink(x, tiny, out=x)
    return F.hardshrink(x, tiny)  # x where |x| > tiny, else 0: one pass (masked_fill: three)


def dropout_mask(like: torch.Tensor, shape, p: float) -> torch.Tensor:
    """A dropout mask of `shape`, in `like`'s dtype and device: 1/(1 − p) with probability 1 − p, else 0. On CPU it
    is drawn as uniform ≥ p in place, in half the time of torch's `bernoulli_` (what `nn.Dropout` calls: 3.8 against
    1.9 ms for 64 × 18 × 256 values), about 3 % of a training step with three masks; elsewhere it is torch's own."""
    if like.device.type != "cpu" or p >= 1:
        return F.dropout(like.new_ones(shape), p)
    return torch.rand(shape, dtype=like.dtype, device=like.device).ge_(p).mul_(1 / (1 - p))


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """`F.dropout(x, p, training)`, with the mask of `dropout_mask`."""
    if not training or p == 0:
        return x
    return x * dropout_mask(x, x.shape, p)


def flush_denormal_grads(x: torch.Tensor) -> None:
    """Flushes (see `flush_denormals`) the gradient that reaches `x` before it flows further back."""
    if x.requires_grad and x.device.type == "cpu":
        x.register_hook(flush_denormals)


def _lstm_cell(gates, cell, inplace: bool = False):
    """One LSTM step from the gates' pre-activations W_ih x + b_ih + W_hh h + b_hh (torch's gate order i, f, g, o).
    Returns h, c and what the backward reuses: (σ of all four gates, of which the g slot is unused; tanh(g); tanh(c)).

    With `inplace` (inference, where the caller owns `gates` and keeps nothing for a backward), the activations are
    written over the gates, σ only where it is used, and h is a view of them: no new (B, 4H) tensor. The same values
    (to the last bit where the vector kernels split the slices as they split whole rows).
    """
    h = gates.shape[-1] // 4
    if inplace:
        in_forget = gates[..., : 2 * h].sigmoid_()  # σ(i), σ(f)
        g = gates[..., 2 * h : 3 * h].tanh_()
        cell = torch.addcmul(in_forget[..., h:] * cell, in_forget[..., :h], g)
        return gates[..., 3 * h :].sigmoid_().mul_(torch.tanh(cell)), cell, None
    sigmoids = torch.sigmoid(gates)  # σ(i), σ(f), ·, σ(o)
    g = torch.tanh(gates[..., 2 * h : 3 * h])
    cell = torch.addcmul(sigmoids[..., h : 2 * h] * cell, sigmoids[..., :h], g)  # c = σ(f) c + σ(i) tanh(g)
    tanh_cell = torch.tanh(cell)
    return sigmoids[..., 3 * h :] * tanh_cell, cell, (sigmoids, g, tanh_cell)


def _lstm_gate_gradients(d_gate, d_cell, d_hidden, activations, g, tanh_cell, cell_prev):
    """The backward of `_lstm_cell`, written into `d_gate` (…, 4H): ∂/∂ the pre-activations of [i f g o], given
    ∂/∂c_t (`d_cell`, the hidden state's share already added) and ∂/∂h_t. `activations` (…, 4H) holds σ of i, f, o
    (its g slot is not read), `g` = tanh(g), `cell_prev` = c_{t-1} (None at a row's first step: c_{-1} = 0)."""
    h = g.shape[-1]
    d_i, d_f, d_g, d_o = d_gate.chunk(4, dim=-1)
    torch.mul(d_cell, g, out=d_i)  # c = σ(f) c_{t-1} + σ(i) tanh(g)
    if cell_prev is None:
        d_f.zero_()
    else:
        torch.mul(d_cell, cell_prev, out=d_f)
    torch.mul(d_cell, activations[..., :h], out=d_g)
    torch.mul(d_hidden, tanh_cell, out=d_o)  # h = σ(o) tanh(c)
    derivative = activations * (1 - activations)  # σ' for i, f, o
    torch.mul(g, g, out=derivative[..., 2 * h : 3 * h]).neg_().add_(1)  # tanh' for g
    d_gate.mul_(derivative)


def _gru_cell(input_gates, hidden_gates, hidden):
    """One GRU step (torch's gate order r, z, n; the candidate uses r ⊙ (W_hn h + b_hn))."""
    input_r, input_z, input_n = input_gates.chunk(3, dim=-1)
    hidden_r, hidden_z, hidden_n = hidden_gates.chunk(3, dim=-1)
    reset = torch.sigmoid(input_r + hidden_r)
    update = torch.sigmoid(input_z + hidden_z)
    candidate = torch.tanh(input_n + reset * hidden_n)
    return (1 - update) * candidate + update * hidden


@dataclass
class RecurrenceSpec:
    """What the recurrence runs with, besides the tensors autograd tracks."""

    rnn: nn.LSTM | nn.GRU  # the decoder RNN: its weights, read per layer
    attention: nn.Module  # RNNSeq2SeqAttention
    embedding_size: int  # E: layer 0's input is [emb (E); input feed (H)]
    padding_mask: torch.Tensor  # (B, 1, S) bool, True = padding
    feed_mask: torch.Tensor | None  # (B, T, H) dropout mask of h̃_t, already scaled by 1/(1-p); None = no dropout
    layer_masks: torch.Tensor | None  # (L-1, B, T, H) dropout masks between layers, scaled; None = no dropout
    use_coverage: bool  # coverage is a feature of the attention scores (otherwise only summed for the outputs)
    int8_gates: dict | None = None  # CPU int8 inference: ("feed", 0), ("hidden", k), ("input", k) -> quantised linear
    kmajor: dict | None = None  # `kmajor_weights`: (in, out) copies of the step weights; None: read transposed

    @property
    def is_lstm(self) -> bool:
        return isinstance(self.rnn, nn.LSTM)

    @property
    def folds_hidden_bias(self) -> bool:
        """Float LSTM: b_hh of layer 0 is added with b_ih before the loop (`embed_gate_bias`), and each step's
        products accumulate into one tensor (addmm), with no separate sums of gate tensors."""
        return self.is_lstm and self.int8_gates is None

    def embed_gate_bias(self) -> torch.Tensor:
        """The bias of the embedding half of layer 0's products, computed for all steps before the loop."""
        return self.rnn.bias_ih_l0 + self.rnn.bias_hh_l0 if self.folds_hidden_bias else self.rnn.bias_ih_l0

    @property
    def feed_weight(self) -> torch.Tensor:
        """W_f (G·H, H): the input-feed half of layer 0's W_ih."""
        return self.rnn.weight_ih_l0[:, self.embedding_size :]

    def rnn_weights(self) -> list[torch.Tensor]:
        """Layer 0: W_f, W_hh (and b_hh unless `folds_hidden_bias`); layer k > 0: W_ih, b_ih, W_hh, b_hh."""
        rnn, weights = self.rnn, [self.feed_weight]
        for k in range(rnn.num_layers):
            if k > 0:
                weights += [getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"bias_ih_l{k}")]
            weights.append(getattr(rnn, f"weight_hh_l{k}"))
            if k > 0 or not self.folds_hidden_bias:
                weights.append(getattr(rnn, f"bias_hh_l{k}"))
        return weights

    def step_weights(self, rows: int) -> dict[str, torch.Tensor] | None:
        """The (out, in) weights every step multiplies by, by name, where `kmajor_weights` applies to steps of
        `rows` rows; otherwise None. Layer 0's W_ih is whole: the step reads the W_f rows of its copy."""
        attention, rnn = self.attention, self.rnn
        if self.int8_gates is not None:
            return None
        layers = {"combine": attention.combine}
        if attention.attention_type == "additive":
            layers["query"] = attention.query_proj
        weights = {name: layer.weight for name, layer in layers.items()}
        for k in range(rnn.num_layers):
            weights[f"ih{k}"], weights[f"hh{k}"] = getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"weight_hh_l{k}")
        return weights if kmajor_applies(list(weights.values()), list(layers.values()), rows) else None

    def attention_weights(self) -> list[torch.Tensor]:
        """W_c, then W_a (general) or W_h (additive) is NOT here (the keys come projected), then W_s, b_s, v
        (additive), then w_c (coverage)."""
        attention, weights = self.attention, [self.attention.combine.weight]
        if attention.attention_type == "additive":
            weights += [attention.query_proj.weight, attention.query_proj.bias, attention.score_proj.weight]
        if attention.coverage_weight is not None:
            weights.append(attention.coverage_weight)
        return weights


def kmajor_weights(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """(in, out) contiguous copies of the (out, in) `weights` ("K-major": the product's inner dimension first). On
    CPU, MKL's single-thread sgemm runs a decoder step's small products 10-30 % faster from these than from the
    weights read transposed, as `F.linear` reads them: the LSTM gates ([B × 512] · [512 × 1024]) of 64 rows,
    563 -> 440 µs; 30 rows (greedy decoding) 348 -> 236 µs; the output layer over an 8 000-word vocabulary, 30 rows,
    1.36 -> 0.98 ms. (With two threads the two layouts run alike; from ~256 rows the transposed read is faster, see
    `_KMAJOR_MAX_ROWS`.) Inference only, kept between calls (`RNNSeq2SeqDecoder._derived`): a transposing copy is
    slow (1.6 ms for the benchmark decoder's 0.8 M weights), about what a training step's ~15 steps would save, and
    training changes the weights at every optimiser step."""
    return {name: w.detach().t().contiguous() for name, w in weights.items()}


def kmajor_applies(weights: list[torch.Tensor], layers: list[nn.Module], rows: int) -> bool:
    """Whether products of `rows` rows by `weights` (those of the `nn.Linear` `layers` among them) run from K-major
    copies: float32 on CPU, no autocast, few rows, small weights, and plain `nn.Linear` layers without hooks (a
    wrapped or hooked layer, PEFT's LoRA say, runs its own forward)."""
    return (
        rows <= _KMAJOR_MAX_ROWS
        and all(type(m) is nn.Linear and not m._forward_hooks and not m._forward_pre_hooks for m in layers)
        and all(w.device.type == "cpu" and w.dtype == torch.float32 for w in weights)
        and sum(w.numel() for w in weights) <= _KMAJOR_MAX_VALUES
        and not torch.is_autocast_enabled("cpu")
    )


def _run(spec: RecurrenceSpec, embed_gates, hidden, cell, input_feed, coverage, keys, values, saved=None):
    """The forward loop. `embed_gates` (B, T, G·H) = W_e · emb(y_t) + `spec.embed_gate_bias()` for every step; `hidden` and
    `cell` (L, B, H) the state before step 0, `input_feed` (B, H) h̃_{-1}, `coverage` (B, S) c^0, `keys` (B, S, H) from
    `attention.project_keys`, `values` (B, S, He) the encoder states. With `saved` (a dict), keeps what the backward
    needs. Returns s_t, h̃_t (after dropout), a_t, c_t, c^t (each (B, T, ·)), the final h and c (L, B, H), c^T."""
    rnn, layers, int8, fold = spec.rnn, spec.rnn.num_layers, spec.int8_gates, spec.folds_hidden_bias
    # The step products' weights as (in, out): the K-major copies where given, else the (out, in) weights transposed.
    kmajor = spec.kmajor or {}
    w_feed_t = kmajor["ih0"][spec.embedding_size :] if kmajor else spec.feed_weight.t()  # (H, G·H)
    w_hh_t = [kmajor.get(f"hh{k}", getattr(rnn, f"weight_hh_l{k}").t()) for k in range(layers)]
    w_ih_t = [None] + [kmajor.get(f"ih{k}", getattr(rnn, f"weight_ih_l{k}").t()) for k in range(1, layers)]
    # In-place products (addmm_) are not cast by autocast, so under autocast every product is out of place.
    autocast = torch.is_autocast_enabled(embed_gates.device.type)
    # Generation owns `embed_gates` (made for this call) and records no graph: the products accumulate into it.
    in_place = fold and saved is None and not torch.is_grad_enabled() and not autocast
    if fold:  # layers above the first: b_ih + b_hh, once per call
        biases = [None] + [getattr(rnn, f"bias_ih_l{k}") + getattr(rnn, f"bias_hh_l{k}") for k in range(1, layers)]
    hidden, cell = list(hidden.unbind(0)), (list(cell.unbind(0)) if spec.is_lstm else None)  # L × (B, H)
    outputs = {name: [] for name in ("query", "attentional", "weights", "context", "coverage")}
    keep_tanh = None if saved is None else saved.get("additive_tanh")  # the backward's z_t, when it keeps them
    gates = [[] for _ in range(layers)]  # per layer, per step: activations (LSTM) or (input, hidden) gates (GRU)
    states = [[] for _ in range(layers)]  # per layer, per step: h (and c) after the step
    for t, step_gates in enumerate(embed_gates.unbind(1)):  # T × (B, G·H)
        x = None
        for k in range(layers):
            if k > 0 and spec.layer_masks is not None:
                x = x * spec.layer_masks[k - 1, :, t]  # nn.LSTM/GRU's dropout between layers
            if fold:  # W_ih x + W_hh h + b, accumulated in one (B, 4H) tensor
                if k == 0:  # (W_e emb + b) + W_f h̃_{t-1}; without autograd, in the step's own gates (no copy)
                    pre = (
                        step_gates.addmm_(input_feed, w_feed_t)
                        if in_place
                        else torch.addmm(step_gates, input_feed, w_feed_t)
                    )
                else:
                    pre = torch.addmm(biases[k], x, w_ih_t[k])
                pre = torch.addmm(pre, hidden[k], w_hh_t[k]) if autocast else pre.addmm_(hidden[k], w_hh_t[k])
                hidden[k], cell[k], activations = _lstm_cell(pre, cell[k], inplace=in_place)
            else:
                b_hh = getattr(rnn, f"bias_hh_l{k}")
                if k == 0:
                    feed = int8["feed", 0](input_feed) if int8 else input_feed @ w_feed_t
                    input_gates = step_gates + feed  # (B, G·H)
                else:
                    b_ih = getattr(rnn, f"bias_ih_l{k}")
                    input_gates = int8["input", k](x) if int8 else torch.addmm(b_ih, x, w_ih_t[k])
                hidden_gates = int8["hidden", k](hidden[k]) if int8 else torch.addmm(b_hh, hidden[k], w_hh_t[k])
                if spec.is_lstm:
                    hidden[k], cell[k], activations = _lstm_cell(input_gates + hidden_gates, cell[k])
                else:
                    hidden[k] = _gru_cell(input_gates, hidden_gates, hidden[k])
            if saved is not None:
                gates[k].append(activations if spec.is_lstm else (input_gates, hidden_gates))
                states[k].append((hidden[k], cell[k]) if spec.is_lstm else (hidden[k],))
            x = hidden[k]
        query = x.unsqueeze(1)  # (B, 1, H)
        coverage_t = coverage.unsqueeze(1)  # (B, 1, S)
        attentional, weights, context = spec.attention(
            query, keys, values, spec.padding_mask, coverage_t if spec.use_coverage else None, keep_tanh, kmajor
        )  # (B, 1, H), (B, 1, S), (B, 1, He)
        input_feed = (
            attentional.squeeze(1) if spec.feed_mask is None else attentional.squeeze(1) * spec.feed_mask[:, t]
        )
        for name, value in zip(outputs, (query, input_feed.unsqueeze(1), weights, context, coverage_t), strict=True):
            outputs[name].append(value)
        if saved is not None:
            saved.setdefault("attentional", []).append(attentional.squeeze(1))  # h̃_t before dropout
        coverage = coverage + weights.squeeze(1)  # c^{t+1} = c^t + a_t
    if saved is not None:
        saved.update(gates=gates, states=states)
    # one step (generation): its tensors as they are, not copied by a cat of one
    query, attentional, weights, context, coverages = (
        v[0] if len(v) == 1 and saved is None else torch.cat(v, dim=1) for v in outputs.values()
    )

    def stacked(states):  # L × (B, H) -> (L, B, H): one layer's as a view, outside `InputFeedingRecurrence`
        return states[0].unsqueeze(0) if layers == 1 and saved is None else torch.stack(states)

    final_hidden, final_cell = stacked(hidden), (stacked(cell) if spec.is_lstm else None)
    return query, attentional, weights, context, coverages, final_hidden, final_cell, coverage


class InputFeedingRecurrence(torch.autograd.Function):
    """`_run` with the backward through time written out (see the module docstring). Inputs after `spec`: embed
    gates, h_0, c_0 (None for GRU), h̃_{-1}, c^0, keys, values, then `spec.rnn_weights()`, `spec.attention_weights()`."""

    @staticmethod
    def forward(ctx, spec, embed_gates, hidden, cell, input_feed, coverage, keys, values, *weights):
        saved = {}
        batch_size, steps = embed_gates.shape[:2]
        if spec.attention.attention_type == "additive" and batch_size * steps * keys[0].numel() <= _KEEP_TANH_MAX:
            saved["additive_tanh"] = []  # z_t = tanh(W_s s_t + b + k_i …) of every step: not recomputed backward
        outputs = _run(spec, embed_gates, hidden, cell, input_feed, coverage, keys, values, saved)
        query, attentional, attention, context, coverages = outputs[:5]
        ctx.spec, ctx.saved = spec, saved
        ctx.save_for_backward(
            hidden, cell, input_feed, keys, values, query, attentional, attention, context, coverages
        )
        ctx.set_materialize_grads(False)
        return outputs

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, d_query, d_attentional, d_attention, d_context, d_coverages, d_hidden, d_cell, d_coverage):
        spec, saved = ctx.spec, ctx.saved
        attention_module, rnn, layers = spec.attention, spec.rnn, spec.rnn.num_layers
        kind, lstm = attention_module.attention_type, spec.is_lstm
        # Under autocast the saved activations may be half precision: the backward runs in the weights' dtype, and
        # autograd casts each returned gradient to its input's dtype.
        dtype = attention_module.combine.weight.dtype

        def cast(x):
            return None if x is None else x.to(dtype)

        hidden0, cell0, feed0, keys, values, query, attentional, attention, context, coverages = map(
            cast, ctx.saved_tensors
        )
        d_query, d_attentional, d_attention, d_context, d_coverages, d_hidden, d_cell, d_coverage = map(
            cast, (d_query, d_attentional, d_attention, d_context, d_coverages, d_hidden, d_cell, d_coverage)
        )
        feed_mask, layer_masks = cast(spec.feed_mask), cast(spec.layer_masks)
        w_feed = cast(spec.feed_weight)  # (G·H, H)
        w_hh = [cast(getattr(rnn, f"weight_hh_l{k}")) for k in range(layers)]
        w_ih = [None] + [cast(getattr(rnn, f"weight_ih_l{k}")) for k in range(1, layers)]
        w_combine = cast(attention_module.combine.weight)  # (H, He + H)
        w_coverage = cast(attention_module.coverage_weight) if spec.use_coverage else None
        if kind == "additive":
            w_query, b_query = cast(attention_module.query_proj.weight), cast(attention_module.query_proj.bias)
            v = cast(attention_module.score_proj.weight[0])  # (H,)
        batch_size, steps, hidden_size = query.shape
        he = w_combine.shape[1] - hidden_size
        zeros = query.new_zeros

        # Running gradients, carried from step t+1 to step t.
        d_feed = zeros(batch_size, hidden_size)  # ∂/∂h̃_t (after dropout), from step t+1's input
        d_h = [zeros(batch_size, hidden_size) if d_hidden is None else d_hidden[k].clone() for k in range(layers)]
        d_c = [zeros(batch_size, hidden_size) if d_cell is None else d_cell[k].clone() for k in range(layers)]
        d_cov = zeros(coverages.shape[0], coverages.shape[2]) if d_coverage is None else d_coverage.clone()  # (B, S)
        # Per-step gradients, stacked after the loop for the weight gradients, batch-major (row b·T + t) like the
        # inputs they meet there, so that none of those is transposed into a copy. LSTM: written into one (B, T, 4H)
        # tensor per layer, every value of it by `_lstm_gate_gradients` (so not zeroed first: a pass over B·T·4H),
        # which is also ∂/∂embed_gates as it is.
        if lstm:
            d_gates = [query.new_empty(batch_size, steps, w_hh[k].shape[0]) for k in range(layers)]
            w_hh_feed = torch.cat([w_hh[0], w_feed], dim=1)  # (4H, 2H): ∂/∂h_{t-1} and ∂/∂h̃_{t-1} in one product
        else:
            d_gates = [[None] * steps for _ in range(layers)]  # input-side gate gradients (B, G·H)
        d_hidden_gates = [[None] * steps for _ in range(layers)] if not lstm else d_gates  # GRU: differ in n
        d_pre = [None] * steps  # ∂/∂(W_c [c_t; s_t]) (B, H)
        d_scores = [None] * steps  # ∂/∂scores (B, S)
        d_ctx = [None] * steps  # ∂/∂c_t (B, He)
        d_query_proj = [None] * steps  # additive: ∂/∂(W_s s_t + b) (B, H)
        d_keys_additive = zeros(keys.shape) if kind == "additive" else None
        d_score_weight = zeros(hidden_size) if kind == "additive" else None  # v
        d_coverage_weight = zeros(hidden_size) if w_coverage is not None else None

        for t in reversed(range(steps)):
            # h̃_t (after dropout) is an output and the input feed of step t+1.
            d_out = d_feed if d_attentional is None else d_feed + d_attentional[:, t]
            if feed_mask is not None:
                d_out = d_out * feed_mask[:, t]
            att = cast(saved["attentional"][t])  # (B, H)
            d_pre[t] = d_out * (1 - att * att)  # h̃ = tanh(pre)
            d_cat = d_pre[t] @ w_combine  # (B, He + H)
            d_c_t = d_cat[:, :he] if d_context is None else d_cat[:, :he] + d_context[:, t]  # (B, He)
            d_s = d_cat[:, he:] if d_query is None else d_cat[:, he:] + d_query[:, t]  # (B, H)
            d_ctx[t] = d_c_t
            a = attention[:, t]  # (B, S)
            # c_t = Σ_i a_i h_i; a_t also enters c^{t+1} = c^t + a_t and the weights output.
            d_a = torch.bmm(d_c_t.unsqueeze(1), values.transpose(1, 2)).squeeze(1) + d_cov  # (B, S)
            if d_attention is not None:
                d_a = d_a + d_attention[:, t]
            d_score = a * (d_a - (a * d_a).sum(dim=-1, keepdim=True))  # softmax backward; 0 at padding (a = 0)
            d_score = flush_denormals(d_score)  # a tiny a_i makes a subnormal ∂/∂score_i
            d_scores[t] = d_score
            cov_t = coverages[:, t]  # (B, S) c^t
            if d_coverages is not None:
                d_cov = d_cov + d_coverages[:, t]
            s_t = query[:, t]  # (B, H)
            if kind == "additive":
                # score_i = vᵀ z_i, z_i = tanh(W_s s + b + k_i + w_c c^t_i): kept by the forward, or recomputed
                if "additive_tanh" in saved:
                    z = cast(saved["additive_tanh"][t]).squeeze(1)  # (B, S, H)
                else:
                    z = F.linear(s_t, w_query, b_query).unsqueeze(1) + keys  # (B, S, H)
                    if w_coverage is not None:
                        z.addcmul_(cov_t.unsqueeze(-1), w_coverage)
                    z.tanh_()
                d_score_weight += torch.einsum("bs,bsh->h", d_score, z)
                d_proj = torch.addcmul(z.new_ones(()), z, z, value=-1)  # 1 - z², one pass
                d_proj.mul_(v).mul_(d_score.unsqueeze(-1))  # (B, S, H) ∂/∂(W_s s + b + k_i …)
                d_keys_additive += d_proj
                d_query_proj[t] = d_proj.sum(dim=1)  # (B, H)
                d_s = d_s + d_query_proj[t] @ w_query
                if w_coverage is not None:
                    d_cov = d_cov + d_proj @ w_coverage  # (B, S)
                    d_coverage_weight += torch.einsum("bsh,bs->h", d_proj, cov_t)
            else:
                # score_i = sᵀ k_i (+ c^t_i sᵀ w_c)
                d_s = d_s + torch.bmm(d_score.unsqueeze(1), keys).squeeze(1)
                if w_coverage is not None:
                    d_cov = d_cov + d_score * (s_t @ w_coverage).unsqueeze(-1)
                    d_u = (d_score * cov_t).sum(dim=-1)  # (B,) ∂/∂(sᵀ w_c)
                    d_s = d_s + d_u.unsqueeze(-1) * w_coverage
                    d_coverage_weight += d_u @ s_t
            d_h[layers - 1] = d_h[layers - 1] + d_s
            # The RNN layers, top to bottom.
            for k in reversed(range(layers)):
                if lstm:
                    c_prev = cell0[k] if t == 0 else cast(saved["states"][k][t - 1][1])
                    sigmoids, g, tanh_c = map(cast, saved["gates"][k][t])
                    _, f, _, o = sigmoids.chunk(4, dim=-1)
                    d_c_total = torch.addcmul(d_c[k], d_h[k], o * (1 - tanh_c * tanh_c))  # h = σ(o) tanh(c)
                    d_gate = d_gates[k][:, t]  # (B, 4H), rows T·4H apart
                    _lstm_gate_gradients(d_gate, d_c_total, d_h[k], sigmoids, g, tanh_c, c_prev)
                    d_c[k] = d_c_total * f
                    d_hidden_gate = d_gate
                else:
                    h_prev = hidden0[k] if t == 0 else cast(saved["states"][k][t - 1][0])
                    input_gates, hidden_gates = map(cast, saved["gates"][k][t])
                    input_r, input_z, input_n = input_gates.chunk(3, dim=-1)
                    hidden_r, hidden_z, hidden_n = hidden_gates.chunk(3, dim=-1)
                    reset, update = torch.sigmoid(input_r + hidden_r), torch.sigmoid(input_z + hidden_z)
                    n = torch.tanh(input_n + reset * hidden_n)
                    d_n = d_h[k] * (1 - update) * (1 - n * n)
                    d_r = d_n * hidden_n * reset * (1 - reset)
                    d_z = d_h[k] * (h_prev - n) * update * (1 - update)
                    d_gate = torch.cat([d_r, d_z, d_n], dim=-1)  # (B, 3H), input side
                    d_hidden_gate = torch.cat([d_r, d_z, d_n * reset], dim=-1)  # hidden side
                    d_hidden_gates[k][t] = d_hidden_gate
                if lstm and k == 0:
                    d_through, d_feed = (d_gate @ w_hh_feed).split(hidden_size, dim=-1)  # ∂/∂h_{t-1}, ∂/∂h̃_{t-1}
                else:
                    d_through = d_hidden_gate @ w_hh[k]  # ∂/∂h_{t-1} through the gates
                d_h[k] = d_through if lstm else d_through + d_h[k] * update  # GRU: h_t = ... + z ⊙ h_{t-1}
                if not lstm:  # (an LSTM's d_gate is already a view of its row of d_gates)
                    d_gates[k][t] = d_gate
                if k > 0:
                    d_x = d_gate @ w_ih[k]  # (B, H)
                    if layer_masks is not None:
                        d_x = d_x * layer_masks[k - 1, :, t]
                    d_h[k - 1] = d_h[k - 1] + d_x
            if not lstm:
                d_feed = d_gates[0][t] @ w_feed  # ∂/∂h̃_{t-1}

        # Weight gradients: one product over all B·T rows each.
        def rows(tensors):  # T × (B, n) or (B, T, n) -> (B·T, n), batch-major
            return (tensors if torch.is_tensor(tensors) else torch.stack(tensors, dim=1)).flatten(0, 1)

        feeds = torch.cat([feed0.unsqueeze(1), attentional[:, :-1]], dim=1)  # (B, T, H) h̃_{t-1}
        grads = []
        for k in range(layers):
            dg = rows(d_gates[k])  # (B·T, G·H)
            dhg = dg if lstm else rows(d_hidden_gates[k])
            if k == 0:
                d_embed_gates = dg.view(batch_size, steps, -1)  # (B, T, G·H)
            outputs_k = [cast(saved["states"][k][t][0]) for t in range(steps)]
            h_prevs = rows([hidden0[k], *outputs_k[:-1]])  # (B·T, H)
            if k == 0:
                grads.append(dg.t() @ rows(feeds))  # W_f
            else:
                x = rows([cast(saved["states"][k - 1][t][0]) for t in range(steps)])
                if layer_masks is not None:
                    x = x * rows(layer_masks[k - 1])
                grads += [dg.t() @ x, dg.sum(0)]  # W_ih, b_ih
            grads.append(dhg.t() @ h_prevs)  # W_hh
            if k > 0 or not spec.folds_hidden_bias:
                grads.append(dhg.sum(0))  # b_hh
        d_pre_rows = rows(d_pre)  # (B·T, H)
        grads.append(d_pre_rows.t() @ rows(torch.cat([context, query], dim=-1)))  # W_c
        if kind == "additive":
            d_qp = rows(d_query_proj)
            grads += [d_qp.t() @ rows(query), d_qp.sum(0), d_score_weight.unsqueeze(0)]  # W_s, b_s, v
        if w_coverage is not None:
            grads.append(d_coverage_weight)
        d_scores = torch.stack(d_scores, dim=1)  # (B, T, S)
        d_values = torch.bmm(attention.transpose(1, 2), torch.stack(d_ctx, dim=1))  # (B, S, He) Σ_t a_tᵀ ∂c_t
        d_keys = d_keys_additive if kind == "additive" else torch.bmm(d_scores.transpose(1, 2), query)  # (B, S, H)
        d_hidden0, d_cell0 = torch.stack(d_h), (torch.stack(d_c) if lstm else None)
        return (None, d_embed_gates, d_hidden0, d_cell0, d_feed, d_cov, d_keys, d_values, *grads)


def run_input_feeding(spec: RecurrenceSpec, embed_gates, hidden, cell, input_feed, coverage, keys, values):
    """The recurrence: `InputFeedingRecurrence` when a gradient is needed, the plain loop otherwise (generation)."""
    tensors = (embed_gates, hidden, cell, input_feed, coverage, keys, values)
    # The hand-written backward assumes one source row per decoder row; groups of rows sharing one source
    # (generate()'s beams) run the plain loop, under autograd if a gradient is wanted.
    if torch.is_grad_enabled() and keys.shape[0] == hidden.shape[1]:
        weights = spec.rnn_weights() + spec.attention_weights()
        if any(x is not None and x.requires_grad for x in (*tensors, *weights)):
            return InputFeedingRecurrence.apply(spec, *tensors, *weights)
    return _run(spec, *tensors)


# ---------------------------------------------------------------------------------------------------------------------
# The encoder's LSTM on CPU, with a hand-written backward.
#
# torch runs an LSTM over sequences of different lengths (a PackedSequence) on CPU with its generic per-step loop:
# every step narrows the precomputed input gates, and autograd answers each narrow with a zero tensor the size of ALL
# gates plus an add, so the backward grows with S². `EncoderLSTMLayer` runs one layer, both directions at once, in the
# packed layout: rows sorted longest first, step t holding the n_t rows longer than t, N = Σ_t n_t slots in all. The
# forward is the LSTM equations of the module docstring; the backward through time is written out like the decoder's:
# per step only the product that carries the gradient to step t-1, every weight gradient one product over all N slots.
# The result is torch's to rounding (`tests/test_recurrence_rnn_seq2seq.py`). D is the number of directions.
# ---------------------------------------------------------------------------------------------------------------------


class EncoderLSTMLayer(torch.autograd.Function):
    """One LSTM layer, all directions. `x` (B, S, E) the layer's input; `index` (D, N) for each direction and slot
    the flat position b·S + s of the token read (the reverse direction reads each row from its last real token back);
    `batch_sizes` the n_t; `last` (B,) each sorted row's last slot; `previous` (N − n_0,) the slot of the same row one
    step earlier, for the slots of steps t ≥ 1; `w_ih` (D, 4H, E), `w_hh` (D, 4H, H), `bias` (D, 4H) = b_ih + b_hh.
    Returns the states at their tokens' positions (B, S, D·H), zero at padding, and the final h and c (D, B, H) of
    the sorted rows."""

    @staticmethod
    def forward(ctx, x, index, batch_sizes, last, previous, w_ih, w_hh, bias):
        batch_size, source_length, embedding_size = x.shape
        directions, slots, h = index.shape[0], index.shape[1], w_hh.shape[-1]
        x_slots = x.reshape(-1, embedding_size)[index.flatten()].view(directions, slots, embedding_size)  # (D, N, E)
        # The input products of every step at once; step by step, each (D, n_t, 4H) slice becomes the gates' values.
        gates = torch.baddbmm(bias.unsqueeze(1), x_slots, w_ih.transpose(1, 2))  # (D, N, 4H)
        w_hh_t = w_hh.transpose(1, 2)  # (D, H, 4H)
        cells = x.new_empty(directions, slots, h)  # c_t
        tanh_cells = torch.empty_like(cells)  # tanh(c_t), kept for the backward
        outputs = torch.empty_like(cells)  # h_t
        start = 0
        for t, n in enumerate(batch_sizes):
            now, before = slice(start, start + n), slice(start - batch_sizes[t - 1], start - batch_sizes[t - 1] + n)
            a = gates[:, now]  # (D, n, 4H)
            if t > 0:
                a.baddbmm_(outputs[:, before], w_hh_t)  # + W_hh h_{t-1}
            g = torch.tanh(a[..., 2 * h : 3 * h])
            torch.sigmoid(a, out=a)
            a[..., 2 * h : 3 * h] = g  # a = [σ(i), σ(f), tanh(g), σ(o)]
            if t > 0:
                c = torch.mul(a[..., h : 2 * h], cells[:, before], out=cells[:, now])  # c = f c_{t-1} + i g
                c.addcmul_(a[..., :h], g)
            else:
                torch.mul(a[..., :h], g, out=cells[:, now])
            torch.tanh(cells[:, now], out=tanh_cells[:, now])
            torch.mul(a[..., 3 * h :], tanh_cells[:, now], out=outputs[:, now])  # h = o tanh(c)
            start += n
        direction_ids = torch.arange(directions, device=x.device).repeat_interleave(slots)
        states = x.new_zeros(batch_size * source_length, directions, h)
        states[index.flatten(), direction_ids] = outputs.view(-1, h)
        ctx.save_for_backward(x_slots, index, last, previous, w_ih, w_hh, gates, cells, tanh_cells, outputs)
        ctx.batch_sizes, ctx.input_shape = batch_sizes, x.shape
        return states.view(batch_size, source_length, directions * h), outputs[:, last], cells[:, last]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, d_states, d_final_hidden, d_final_cell):
        x_slots, index, last, previous, w_ih, w_hh, acts, cells, tanh_cells, outputs = ctx.saved_tensors
        batch_sizes, (batch_size, source_length, embedding_size) = ctx.batch_sizes, ctx.input_shape
        directions, slots, h = outputs.shape
        # ∂/∂h_t of every slot, gathered from the states' gradient; the loop adds the recurrent part in place.
        if d_states is None:
            d_h = outputs.new_zeros(outputs.shape)
        else:
            direction_ids = torch.arange(directions, device=outputs.device).repeat_interleave(slots)
            d_h = d_states.reshape(-1, directions, h)[index.flatten(), direction_ids].view(outputs.shape)
        if d_final_hidden is not None:
            d_h[:, last] += d_final_hidden
        # ∂/∂c_t, carried from step t+1 to step t; a row's entry waits untouched until the row's last step.
        d_c = outputs.new_zeros(directions, batch_size, h) if d_final_cell is None else d_final_cell.clone()
        d_gates = torch.empty_like(acts)  # (D, N, 4H) ∂/∂ pre-activations
        end = slots
        for t in reversed(range(len(batch_sizes))):
            n = batch_sizes[t]
            now = slice(end - n, end)
            a, tanh_c, d_h_t, d_gate = acts[:, now], tanh_cells[:, now], d_h[:, now], d_gates[:, now]
            d_c_t = d_c[:, :n]  # the running rows are the first n
            _, f, g, o = a.chunk(4, dim=-1)
            d_c_t.addcmul_(d_h_t, o * (1 - tanh_c * tanh_c))  # h = o tanh(c)
            before = slice(end - n - batch_sizes[t - 1], end - n - batch_sizes[t - 1] + n) if t > 0 else None
            _lstm_gate_gradients(d_gate, d_c_t, d_h_t, a, g, tanh_c, cells[:, before] if t > 0 else None)
            if t > 0:
                d_c_t.mul_(f)
                d_h[:, before].baddbmm_(d_gate, w_hh)
            end -= n
        # Weight gradients: one product over all slots each.
        d_w_ih = torch.bmm(d_gates.transpose(1, 2), x_slots)
        d_w_hh = torch.bmm(d_gates[:, batch_sizes[0] :].transpose(1, 2), outputs[:, previous])  # Σ_t ∂g_t h_{t-1}ᵀ
        d_bias = d_gates.sum(1)
        d_x = x_slots.new_zeros(batch_size * source_length, embedding_size)
        d_x.index_add_(0, index.flatten(), torch.bmm(d_gates, w_ih).view(-1, embedding_size))
        return d_x.view(batch_size, source_length, embedding_size), None, None, None, None, d_w_ih, d_w_hh, d_bias


def uses_encoder_lstm(rnn: nn.Module, embeds: torch.Tensor) -> bool:
    """Whether `run_encoder_lstm` replaces torch's LSTM: a float LSTM on CPU, a gradient wanted, no autocast (cuDNN
    serves GPUs, and torch's own kernels inference)."""
    return (
        type(rnn) is nn.LSTM
        and rnn.bias
        and rnn.proj_size == 0
        and embeds.device.type == "cpu"
        and torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and (embeds.requires_grad or rnn.weight_hh_l0.requires_grad)
    )


def run_encoder_lstm(rnn: nn.LSTM, embeds: torch.Tensor, order: torch.Tensor, lengths: torch.Tensor):
    """`rnn` over `embeds` (B, S, E), row b's real tokens at the positions `order[b, :lengths[b]]` in reading order.
    Returns what `rnn` returns on the packed rows: the states (B, S, He) at their tokens' positions (zero at padding)
    and the final (h, c), each (Le·D, B, He/D)."""
    batch_size, source_length, _ = embeds.shape
    sorted_lengths, perm = lengths.sort(descending=True, stable=True)  # (B,)
    steps = torch.arange(int(sorted_lengths[0]), device=lengths.device).unsqueeze(1)  # (P, 1), P = longest row
    length = sorted_lengths.unsqueeze(0)  # (1, B)
    valid = steps < length  # (P, B): slot (t, j) exists, time-major like a PackedSequence
    reads = [steps.expand_as(valid)]  # forward: the row's tokens in order
    if rnn.bidirectional:
        reads.append((length - 1 - steps).clamp(min=0))  # reverse: from the last real token back
    rows = order[perm]  # (B, S), sorted rows
    index = torch.stack(
        [rows.gather(1, r.t()).t()[valid] + perm.expand_as(valid)[valid] * source_length for r in reads]
    )
    slot = torch.full(valid.shape, -1, dtype=torch.long, device=valid.device)
    slot[valid] = torch.arange(int(valid.sum()), device=valid.device)  # (P, B) slot number of (t, j)
    previous = slot[:-1][valid[1:]]  # for the slots of steps t ≥ 1, the row's slot at t - 1
    last = slot[sorted_lengths - 1, torch.arange(batch_size, device=valid.device)]  # (B,)
    batch_sizes = valid.sum(1).tolist()
    restore = torch.empty_like(perm)
    restore[perm] = torch.arange(batch_size, device=perm.device)
    x, finals = embeds, []
    suffixes = ["", "_reverse"][: len(reads)]
    for k in range(rnn.num_layers):
        if k > 0:
            x = dropout(x, rnn.dropout, rnn.training)  # nn.LSTM's dropout between layers
        w_ih, w_hh = (
            torch.stack([getattr(rnn, f"{name}_l{k}{s}") for s in suffixes]) for name in ("weight_ih", "weight_hh")
        )
        bias = torch.stack([getattr(rnn, f"bias_ih_l{k}{s}") + getattr(rnn, f"bias_hh_l{k}{s}") for s in suffixes])
        x, hidden, cell = EncoderLSTMLayer.apply(x, index, batch_sizes, last, previous, w_ih, w_hh, bias)
        finals.append((hidden[:, restore], cell[:, restore]))  # (D, B, H) in the batch's order
    final_hidden = torch.cat([hidden for hidden, _ in finals])  # (Le·D, B, H)
    final_cell = torch.cat([cell for _, cell in finals])
    return x, (final_hidden, final_cell)
