"""The input-feeding recurrence's hand-written backward == autograd through the same forward, for every branch."""

import itertools

import pytest
import torch

from hf_rnn_seq2seq import modeling_rnn_seq2seq
from hf_rnn_seq2seq.recurrence_rnn_seq2seq import InputFeedingRecurrence, RecurrenceSpec, _run

from .conftest import make_batch, tiny_model

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

    reference = torch.autograd.grad(_weighted_sum(_run(spec, *tensors)), differentiable, allow_unused=True)
    mine = torch.autograd.grad(
        _weighted_sum(InputFeedingRecurrence.apply(spec, *tensors, *weights)), differentiable, allow_unused=True
    )
    for expected, got in zip(reference, mine, strict=True):
        if expected is None:
            assert got is None or not got.any()
        else:
            torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-11)


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
