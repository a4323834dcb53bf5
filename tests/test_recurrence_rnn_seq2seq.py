"""The input-feeding recurrence's hand-written backward == autograd through the same forward, for every branch."""

import collections
import itertools

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from hf_rnn_seq2seq import modeling_rnn_seq2seq, recurrence_rnn_seq2seq
from hf_rnn_seq2seq.modeling_rnn_seq2seq import RNNSeq2SeqAttention
from hf_rnn_seq2seq.recurrence_rnn_seq2seq import (
    InputFeedingRecurrence,
    RecurrenceSpec,
    _run,
    flush_denormals,
    run_encoder_lstm,
    uses_encoder_lstm,
)

from .conftest import make_batch, tiny_config, tiny_model

BRANCHES = [
    pytest.param(
        dict(cell_type=cell, attention_type=attention, use_coverage=coverage, decoder_layers=layers),
        dropout,
        id=f"{cell}-{attention}-{'cov' if coverage else 'nocov'}-L{layers}-{'drop' if dropout else 'nodrop'}",
    )
    for cell, attention, coverage, layers, dropout in itertools.product(
        ["lstm", "gru"], ["dot", "general", "additive"], [False, True], [1, 2], [False, True]
    )
]


def _inputs(decoder, batch_size=3, steps=4, source_length=5, dropout=False, seed=0):
    """Random float64 inputs of the recurrence (padding in the source), as the decoder would build them."""
    g = torch.Generator().manual_seed(seed)
    config = decoder.config
    h, he, layers = config.hidden_size, config.encoder_output_size, config.decoder_layers
    gate_size = decoder.rnn.weight_hh_l0.shape[0]

    def rand(*shape):
        return (torch.rand(*shape, generator=g, dtype=torch.float64) - 0.5).requires_grad_()

    padding_mask = torch.zeros(batch_size, 1, source_length, dtype=torch.bool)
    padding_mask[1:, :, -2:] = True  # two rows with padding
    feed_mask = layer_masks = None
    if dropout:
        feed_mask = (torch.rand(batch_size, steps, h, generator=g) > 0.3).double() / 0.7
        layer_masks = (torch.rand(layers - 1, batch_size, steps, h, generator=g) > 0.3).double() / 0.7
    spec = RecurrenceSpec(
        decoder.rnn,
        decoder.attention,
        config.embedding_size,
        padding_mask,
        feed_mask,
        layer_masks,
        config.use_coverage,
    )
    values = rand(batch_size, source_length, he)
    keys = values if config.attention_type == "dot" else rand(batch_size, source_length, h)
    coverage = (torch.rand(batch_size, source_length, generator=g, dtype=torch.float64) * 0.5).requires_grad_()
    tensors = (
        rand(batch_size, steps, gate_size),  # embed gates
        rand(layers, batch_size, h),  # h_0
        rand(layers, batch_size, h) if config.cell_type == "lstm" else None,  # c_0
        rand(batch_size, h),  # h̃_{-1}
        coverage,  # c^0
        keys,
        values,
    )
    return spec, tensors


def _weighted_sum(outputs, seed=1):
    """A scalar that depends on every output of the recurrence, each with its own random weights."""
    g = torch.Generator().manual_seed(seed)
    return sum((x * torch.randn(x.shape, generator=g, dtype=x.dtype)).sum() for x in outputs if x is not None)


@pytest.mark.parametrize("overrides,dropout", BRANCHES)
def test_backward_equals_autograd(overrides, dropout):
    model = tiny_model(**overrides).double().train()
    decoder = model.model.decoder
    spec, tensors = _inputs(decoder, dropout=dropout)
    weights = spec.rnn_weights() + spec.attention_weights()  # W_f is a view of W_ih: differentiate the parameters
    parameters = [*decoder.rnn.parameters(), *decoder.attention.parameters()]
    differentiable = [x for x in (*tensors, *parameters) if x is not None]
    differentiable = list({id(x): x for x in differentiable}.values())  # dot attention: keys are the values

    _assert_backward_equals_autograd(spec, tensors, weights, differentiable)


def _assert_backward_equals_autograd(spec, tensors, weights, differentiable, before_backward=None):
    """The gradients of `InputFeedingRecurrence` equal autograd's through the plain loop (`before_backward()` runs in
    between, e.g. to switch a path of the hand-written backward)."""
    reference = torch.autograd.grad(_weighted_sum(_run(spec, *tensors)), differentiable, allow_unused=True)
    if before_backward is not None:
        before_backward()
    mine = torch.autograd.grad(
        _weighted_sum(InputFeedingRecurrence.apply(spec, *tensors, *weights)), differentiable, allow_unused=True
    )
    for expected, got in zip(reference, mine, strict=True):
        if expected is None:
            assert got is None or not got.any()
        else:
            torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("coverage", [False, True], ids=["nocov", "cov"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_additive_backward_keeps_or_recomputes_the_tanh(monkeypatch, cell, coverage):
    """Additive attention's z_t = tanh(W_s s_t + b + k_i …) are kept by the forward for the backward (the test above),
    or recomputed step by step above `_KEEP_TANH_MAX` values: both give autograd's gradients."""
    model = tiny_model(cell_type=cell, attention_type="additive", use_coverage=coverage).double().train()
    decoder = model.model.decoder
    spec, tensors = _inputs(decoder, dropout=True)
    saved = {"additive_tanh": []}
    _run(spec, *tensors, saved=saved)
    assert len(saved["additive_tanh"]) == tensors[0].shape[1]  # one (B, 1, S, H) per step
    weights = spec.rnn_weights() + spec.attention_weights()
    differentiable = [
        x for x in (*tensors, *decoder.rnn.parameters(), *decoder.attention.parameters()) if x is not None
    ]
    _assert_backward_equals_autograd(
        spec,
        tensors,
        weights,
        differentiable,
        lambda: monkeypatch.setattr(recurrence_rnn_seq2seq, "_KEEP_TANH_MAX", 0),
    )


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradcheck(cell):
    """Against finite differences too (one configuration with everything on: additive, coverage, 2 layers)."""
    model = tiny_model(cell_type=cell, attention_type="additive", use_coverage=True, decoder_layers=2)
    decoder = model.model.decoder.double()
    spec, tensors = _inputs(decoder, batch_size=2, steps=3, source_length=4, dropout=True)
    weights = spec.rnn_weights() + spec.attention_weights()

    def loss(*xs):
        return _weighted_sum(InputFeedingRecurrence.apply(spec, *xs))

    assert torch.autograd.gradcheck(loss, (*tensors, *weights), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(),
        dict(attention_type="additive", use_copy=True, copy_extended_vocab=True, max_source_oovs=3, use_coverage=True),
        dict(cell_type="gru", decoder_layers=2, dropout=0.3),
    ],
)
def test_model_gradients_equal_autograd(monkeypatch, overrides):
    """The whole model's gradients (loss with copy and coverage terms) are those of autograd through the loop."""
    batch = make_batch()
    if overrides.get("copy_extended_vocab"):
        batch["extended_input_ids"] = batch["input_ids"].clone()
        batch["extended_input_ids"][:, 0] = model_vocab = tiny_model().config.vocab_size  # an OOV, copied
        batch["input_ids"][:, 0] = 3
        batch["labels"][:, 0] = model_vocab

    def gradients():
        model = tiny_model(**overrides).train()
        torch.manual_seed(0)  # the same dropout masks in both runs
        model(**batch).loss.backward()
        return {name: p.grad for name, p in model.named_parameters() if p.grad is not None}

    mine = gradients()
    monkeypatch.setattr(
        modeling_rnn_seq2seq, "run_input_feeding", lambda spec, *tensors: _run(spec, *tensors)
    )  # autograd through the loop
    reference = gradients()
    assert mine.keys() == reference.keys()
    for name in reference:
        torch.testing.assert_close(mine[name], reference[name], rtol=1e-4, atol=1e-6, msg=name)


def test_no_graph_is_built_without_gradients():
    """Generation (no grad) runs the plain loop: nothing is saved for a backward."""
    model = tiny_model()
    batch = make_batch()
    with torch.no_grad():
        out = model(**batch)
    assert out.logits.grad_fn is None


# ---------------------------------------------------------------------------------------------------------------------
# The encoder's LSTM with a hand-written backward (`run_encoder_lstm`) against torch's packed LSTM.
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bidirectional,layers,padding_side,lengths",
    [
        (True, 1, "right", [7, 3, 1, 7, 5]),
        (True, 1, "left", [2, 7, 6, 4, 7]),
        (False, 1, "right", [4, 7, 2, 7, 1]),
        (True, 2, "right", [7, 3, 1, 7, 5]),
        (False, 3, "left", [5, 1, 7, 7, 3]),
        (True, 1, "right", [7, 7, 6, 7, 7]),  # one padded row
        (True, 2, "left", [1, 2, 1, 1, 1]),  # rows of one step
        (True, 2, "holes", [7, 3, 1, 6, 4]),  # real tokens anywhere in the row
    ],
)
def test_encoder_lstm_equals_torch(monkeypatch, bidirectional, layers, padding_side, lengths):
    """States, final states and every gradient (input and weights) are torch's packed LSTM's, in float64."""
    model = tiny_model(bidirectional_encoder=bidirectional, encoder_layers=layers).double().train()
    model.model.encoder.dropout.p = 0.0
    model.model.encoder.rnn.dropout = 0.0  # the layers' dropout masks cannot be shared between the two paths
    encoder = model.model.encoder
    lengths = torch.tensor(lengths)
    source_length = int(lengths.max())
    g = torch.Generator().manual_seed(3)
    input_ids = torch.randint(4, encoder.config.vocab_size, (len(lengths), source_length), generator=g)
    positions = torch.arange(source_length)
    if padding_side == "right":
        mask = positions[None, :] < lengths[:, None]
    elif padding_side == "left":
        mask = positions[None, :] >= source_length - lengths[:, None]
    else:  # each row's real tokens at random positions
        mask = torch.zeros(len(lengths), source_length, dtype=torch.bool)
        for row, length in enumerate(lengths.tolist()):
            mask[row, torch.randperm(source_length, generator=g)[:length]] = True
    input_ids = input_ids.masked_fill(~mask, 0)

    def run(reference):
        encoder.zero_grad()
        if reference:
            with monkeypatch.context() as patch:  # torch's own LSTM, the path of inference and GPUs
                patch.setattr(modeling_rnn_seq2seq, "uses_encoder_lstm", lambda rnn, embeds: False)
                out = encoder(input_ids, mask.long())
        else:
            out = encoder(input_ids, mask.long())
            assert type(out.last_hidden_state.grad_fn).__name__ == "EncoderLSTMLayerBackward"
        g = torch.Generator().manual_seed(5)
        tensors = [out.last_hidden_state, out.final_hidden_state, out.final_cell_state]
        loss = sum((x * torch.randn(x.shape, generator=g, dtype=x.dtype)).sum() for x in tensors)
        loss.backward()
        grads = {name: p.grad.clone() for name, p in encoder.named_parameters()}
        return [x.detach() for x in tensors], grads

    (mine, my_grads), (theirs, their_grads) = run(False), run(True)
    for a, b in zip(mine, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert (mine[0][~mask] == 0).all()  # padding states are zero
    assert my_grads.keys() == their_grads.keys()
    for name in their_grads:
        torch.testing.assert_close(my_grads[name], their_grads[name], rtol=0, atol=1e-12, msg=name)


class _EncoderLSTM(torch.nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x, order, lengths):
        return run_encoder_lstm(self.rnn, x, order, lengths)


def test_encoder_lstm_gradcheck():
    """Finite differences through `run_encoder_lstm` (two layers, both directions, left padding), for the input and
    every weight."""
    torch.manual_seed(0)
    module = _EncoderLSTM(torch.nn.LSTM(3, 2, num_layers=2, bidirectional=True, batch_first=True).double())
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1]], dtype=torch.bool)
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
    embeds = torch.randn(3, 4, 3, dtype=torch.double, requires_grad=True)
    names = [name for name, _ in module.named_parameters()]

    def loss(x, *params):
        parameters = dict(zip(names, params, strict=True))
        states, (h, c) = torch.func.functional_call(module, parameters, (x, order, mask.sum(1)))
        return states.sin().sum() + (h * c).sum()

    params = [p.detach().clone().requires_grad_() for p in module.parameters()]
    assert torch.autograd.gradcheck(loss, (embeds, *params), eps=1e-6, atol=1e-6)


def test_encoder_lstm_only_when_training_on_cpu():
    """Inference, autocast and GRUs keep torch's own kernels."""
    model = tiny_model()
    embeds = torch.zeros(2, 3, model.config.embedding_size)
    assert uses_encoder_lstm(model.model.encoder.rnn, embeds)
    with torch.no_grad():
        assert not uses_encoder_lstm(model.model.encoder.rnn, embeds)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not uses_encoder_lstm(model.model.encoder.rnn, embeds)
    assert not uses_encoder_lstm(tiny_model(cell_type="gru").model.encoder.rnn, embeds)


# ---------------------------------------------------------------------------------------------------------------------
# Subnormal floats: flushed where the softmaxes make them, so no matrix product of a training step reads one.
# ---------------------------------------------------------------------------------------------------------------------

TINY32 = torch.finfo(torch.float32).tiny
PRODUCTS = {"mm", "bmm", "addmm", "addmm_", "baddbmm", "baddbmm_", "addbmm", "mkldnn_rnn_layer_backward"}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_dropout_masks(dtype):
    """Our dropout (uniform ≥ p in place, faster than torch's bernoulli_ on CPU): values 0 or 1/(1 − p) in the input's
    dtype, a fraction p of zeros, seeded like torch's; the identity in evaluation or at p = 0."""
    x = torch.ones(200, 50, 40, dtype=dtype)
    torch.manual_seed(0)
    out = recurrence_rnn_seq2seq.dropout(x, 0.3, training=True)
    assert out.dtype == dtype and out.shape == x.shape
    values = set(out.unique().tolist())
    assert values == {0.0, torch.tensor(1 / 0.7, dtype=dtype).item()}
    assert abs((out == 0).float().mean().item() - 0.3) < 0.01
    torch.manual_seed(0)
    assert torch.equal(out, recurrence_rnn_seq2seq.dropout(x, 0.3, training=True))  # reproducible under a seed
    assert recurrence_rnn_seq2seq.dropout(x, 0.3, training=False) is x
    assert recurrence_rnn_seq2seq.dropout(x, 0.0, training=True) is x
    assert not recurrence_rnn_seq2seq.dropout(x, 1.0, training=True).any()
    mask = recurrence_rnn_seq2seq.dropout_mask(x, (3, 7), 0.5)
    assert mask.shape == (3, 7) and mask.dtype == dtype
    y = torch.randn(4, 5, requires_grad=True)
    torch.manual_seed(1)
    out = recurrence_rnn_seq2seq.dropout(y, 0.5, training=True)
    out.sum().backward()
    assert torch.equal(y.grad, (out != 0).float() * 2.0)  # the gradient goes through the kept units, scaled


def test_flush_denormals():
    x = torch.tensor([0.0, TINY32 / 4, -TINY32 / 2, TINY32, -2 * TINY32, 1e-30, -1.0, float("inf")])
    flushed = flush_denormals(x)
    assert flushed.tolist() == [0.0, 0.0, 0.0, 0.0, -2 * TINY32, x[5].item(), -1.0, float("inf")]
    assert x[1] > 0  # out of place
    x64 = torch.tensor([TINY32 / 4, 1e-310], dtype=torch.float64)  # the threshold is the dtype's own
    assert flush_denormals(x64).tolist() == [TINY32 / 4, 0.0]
    x16 = torch.tensor([1e-6], dtype=torch.float16)  # subnormal in float16, computed as a normal float32 on CPU
    assert flush_denormals(x16).item() > 0
    bf16 = torch.tensor([TINY32 / 4, 1e-30], dtype=torch.bfloat16)  # float32's exponent range
    assert flush_denormals(bf16).tolist() == [0.0, bf16[1].item()]
    rows = torch.tensor([[TINY32 / 4, 1.0, TINY32 / 8], [2.0, -TINY32 / 2, TINY32 / 8]])
    view = rows[:, :2]  # in place, a strided view: its own values only
    assert flush_denormals(view, inplace=True) is view
    assert rows.tolist() == [[0.0, 1.0, TINY32 / 8], [2.0, 0.0, TINY32 / 8]]


class _SubnormalReads(TorchDispatchMode):
    """Counts the subnormal float32 values that matrix products (and oneDNN's RNN backward) read."""

    def __init__(self):
        super().__init__()
        self.reads = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in PRODUCTS:
            for x in tree_flatten((args, kwargs))[0]:
                if isinstance(x, torch.Tensor) and x.dtype == torch.float32:
                    self.reads[func.overloadpacket.__name__] += int(((x.abs() < TINY32) & (x != 0)).sum())
        return func(*args, **(kwargs or {}))


def test_attention_flushes_subnormal_weights_and_score_gradients():
    """Scores 0, -90, -95, -200 give softmax weights 1, e^{-90}, e^{-95}, 0: the middle two are subnormal in float32.
    The attention returns them as 0, and the gradient of the scores reaching the keys and the query holds none."""
    torch.manual_seed(0)
    attention = RNNSeq2SeqAttention(tiny_config(attention_type="dot"))
    hidden_size = attention.combine.weight.shape[0]
    query = torch.zeros(1, 1, hidden_size)
    query[..., 0] = 1.0
    keys = torch.zeros(1, 4, hidden_size)
    keys[0, :, 0] = torch.tensor([0.0, -90.0, -95.0, -200.0])  # scores = qᵀk_i
    unflushed = torch.softmax(keys[0, :, 0], dim=-1)
    assert ((unflushed > 0) & (unflushed < TINY32)).sum() == 2  # the setting does make subnormals
    query.requires_grad_(), keys.requires_grad_()
    values = torch.randn(1, 4, attention.combine.weight.shape[1] - hidden_size, requires_grad=True)
    padding_mask = torch.zeros(1, 1, 4, dtype=torch.bool)
    attentional, weights, _ = attention(query, keys, values, padding_mask)
    assert weights[0, 0].tolist() == [1.0, 0.0, 0.0, 0.0]
    (attentional * torch.randn(attentional.shape)).sum().backward()
    for x in (query.grad, keys.grad, values.grad):
        assert not ((x.abs() < TINY32) & (x != 0)).any()


@pytest.mark.parametrize(
    "overrides",
    [
        dict(attention_type="additive", use_copy=True, use_coverage=True),
        dict(attention_type="general", use_copy=True, copy_extended_vocab=True, max_source_oovs=3),
        dict(
            attention_type="general", use_copy=True, copy_extended_vocab=True, max_source_oovs=3, input_feeding=False
        ),
    ],
    ids=["additive-copy-coverage", "general-copyext", "general-copyext-nofeed"],
)
def test_sharp_copy_model_trains_without_subnormals(monkeypatch, overrides):
    """A copy model whose attention and output distributions are very sharp (probabilities of e^{-90} and less, as a
    trained model's become) makes subnormal floats in its softmaxes and in the gradients through them. They are
    flushed, so no product of the forward or backward reads one (such products run several times slower on x86
    CPUs), through the input-feeding recurrence and through autograd. Without the flushes the same step does read
    them: the check is not vacuous. (A plain model's output distribution is left to torch's cross-entropy: see
    `flush_denormals`.)"""
    model = tiny_model(**overrides).train()
    attention = model.model.decoder.attention
    with torch.no_grad():
        model.lm_head.weight.mul_(1000.0)
        (attention.score_proj if overrides["attention_type"] == "additive" else attention.key_proj).weight.mul_(1000.0)
    batch = make_batch(batch_size=8, source_length=12, target_length=8)
    if overrides.get("copy_extended_vocab"):
        batch["extended_input_ids"] = batch["input_ids"]

    def subnormal_reads():
        with _SubnormalReads() as mode:
            model(**batch).loss.backward()
        model.zero_grad()
        return sum(mode.reads.values())

    assert subnormal_reads() == 0
    identity = lambda x, inplace=False: x  # noqa: E731
    monkeypatch.setattr(modeling_rnn_seq2seq, "flush_denormals", identity)
    monkeypatch.setattr(modeling_rnn_seq2seq, "flush_denormal_grads", lambda x: None)
    monkeypatch.setattr(recurrence_rnn_seq2seq, "flush_denormals", identity)
    assert subnormal_reads() > 0
