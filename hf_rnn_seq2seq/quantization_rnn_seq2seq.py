# Copyright 2026 The hf-rnn-seq2seq authors. Licensed under the Apache License, Version 2.0.
"""CPU int8 inference: every matrix product with a weight matrix (encoder RNN, decoder gates, attention, bridge,
output layer) runs as a dynamically quantised int8 product (`torch.ao` dynamic quantisation, fbgemm/onednn kernels):
weights int8 with one scale per output row, activations quantised per call. About 2.5-3× faster products on CPU.

The float32 parameters stay the model's parameters (its `state_dict`, what `save_pretrained` writes); the int8 copies
are derived from them, deterministically, when the model is quantised, and the modules run them through an
instance-level `forward`. So a quantised model saves as an ordinary checkpoint whose `config.json` says
`cpu_quantization="dynamic_int8"`, and `from_pretrained` quantises it again, to the same int8 weights.

`torch.ao`'s eager-mode quantisation is deprecated upstream in favour of torchao, which has no dynamic int8 path for
LSTM/GRU layers on CPU yet; its deprecation warnings are silenced here.
"""

import warnings

import torch
from torch import nn

QUANTIZATION_KINDS = ("dynamic_int8",)


def _quantized(module: nn.Module) -> nn.Module:
    """The dynamically quantised int8 twin of an nn.Linear / nn.LSTM / nn.GRU (per-output-row weight scales)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's "migrate to torchao" and quantized-tensor deprecations
        return quantize_dynamic(nn.Sequential(module), {type(module): per_channel_dynamic_qconfig}, inplace=False)[0]


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """The int8 twin of x ↦ x Wᵀ + b for a weight that is not an nn.Linear of its own (a slice of an RNN's W_ih)."""
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias)
    return _quantized(linear)


def quantize_dynamic_int8(model) -> None:
    """Quantises `model` (an `RNNSeq2SeqModel` or `RNNSeq2SeqForConditionalGeneration`) in place for CPU inference."""
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise ValueError("Dynamic int8 quantization runs on CPU only: move the model to the CPU first.")
    if any(p.dtype != torch.float32 for p in model.parameters()):
        raise ValueError("Dynamic int8 quantization starts from float32 weights: call `model.float()` first.")
    dequantize(model)
    model.eval()
    twins = {}
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.out_features > 1:  # a 1-wide product (copy gate, v) gains nothing
            twins[module] = _quantized(module)
        elif isinstance(module, (nn.LSTM, nn.GRU)):
            twins[module] = _quantized(module)
    for module, twin in twins.items():
        module.forward = twin.forward  # the int8 product; the float32 parameters stay where they are
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model.model.decoder
    if decoder.input_feeding:  # the recurrence multiplies with the RNN's weights directly: int8 twins of each part
        rnn, emb_size = decoder.rnn, model.config.embedding_size
        gates = {
            ("embed", 0): _linear(rnn.weight_ih_l0[:, :emb_size], rnn.bias_ih_l0),
            ("feed", 0): _linear(rnn.weight_ih_l0[:, emb_size:], None),
        }
        for k in range(rnn.num_layers):
            gates["hidden", k] = _linear(getattr(rnn, f"weight_hh_l{k}"), getattr(rnn, f"bias_hh_l{k}"))
            if k > 0:
                gates["input", k] = _linear(getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"bias_ih_l{k}"))
        decoder.int8_gates = gates
    model._int8_modules = list(twins)
    model.config.cpu_quantization = "dynamic_int8"


def dequantize(model) -> None:
    """Undoes `quantize_dynamic_int8`: the float32 products again (the parameters never changed)."""
    for module in getattr(model, "_int8_modules", []):
        del module.forward
    model._int8_modules = []
    for module in model.modules():
        if getattr(module, "int8_gates", None) is not None:
            module.int8_gates = None
    model.config.cpu_quantization = None
