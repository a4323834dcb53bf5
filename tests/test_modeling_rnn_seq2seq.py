"""Forward pass, loss, gradients, embeddings and save/load of every configuration branch."""

import copy
import dataclasses
import pickle

import pytest
import torch
from transformers import AutoModel, AutoModelForSeq2SeqLM
from transformers.modeling_outputs import ModelOutput, Seq2SeqLMOutput, Seq2SeqModelOutput

from hf_rnn_seq2seq import RNNSeq2SeqCache, RNNSeq2SeqForConditionalGeneration, RNNSeq2SeqModel
from hf_rnn_seq2seq.modeling_rnn_seq2seq import RNNSeq2SeqEncoderOutput, RNNSeq2SeqLMOutput, RNNSeq2SeqModelOutput

from .conftest import CONFIG_GRID, EOS, PAD, SMALL_GRID, VOCAB, make_batch, tiny_config, tiny_model


@pytest.mark.parametrize("overrides", CONFIG_GRID)
def test_forward_shapes_and_step_by_step_equals_full_forward(overrides):
    """Teacher-forced forward == feeding the same tokens one at a time through `cache` (logits within 1e-5)."""
    model = tiny_model(**overrides)
    batch = make_batch()
    out = model(**batch, output_attentions=True, output_hidden_states=True)
    B, S = batch["input_ids"].shape
    T = batch["labels"].shape[1]
    assert isinstance(out, Seq2SeqLMOutput)
    assert out.logits.shape == (B, T, VOCAB)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.cache is None  # no state is returned when training with labels
    assert out.encoder_last_hidden_state.shape == (B, S, model.config.encoder_output_size)
    assert len(out.decoder_hidden_states) == 3 and len(out.encoder_hidden_states) == 2
    if model.config.attention_type == "none":
        assert out.cross_attentions is None
    else:
        (attn,) = out.cross_attentions
        assert attn.shape == (B, 1, T, S)

    decoder_input_ids = model.prepare_decoder_input_ids_from_labels(batch["labels"])
    encoder_outputs = model.get_encoder()(batch["input_ids"], batch["attention_mask"])
    cache, step_logits = None, []
    for t in range(T):
        step = model(
            encoder_outputs=encoder_outputs,
            attention_mask=batch["attention_mask"],
            decoder_input_ids=decoder_input_ids[:, t : t + 1],
            cache=cache,
            use_cache=True,
        )
        assert isinstance(step.cache, RNNSeq2SeqCache) and step.cache.get_seq_length() == t + 1
        cache = step.cache
        step_logits.append(step.logits)
    torch.testing.assert_close(torch.cat(step_logits, dim=1), out.logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("overrides", SMALL_GRID)
def test_attention_rows_sum_to_one_and_ignore_padding(overrides):
    model = tiny_model(**overrides)
    if model.config.attention_type == "none":
        pytest.skip("no attention")
    for side in ("right", "left"):
        batch = make_batch(padding_side=side)
        assert (batch["attention_mask"] == 0).any(), "the batch must contain padding, otherwise nothing is tested"
        (attn,) = model(**batch, output_attentions=True).cross_attentions
        attn = attn[:, 0]  # (B, T, S)
        torch.testing.assert_close(attn.sum(-1), torch.ones(attn.shape[:2]))
        padding = (batch["attention_mask"] == 0)[:, None, :].expand_as(attn)
        assert attn[padding].abs().max() == 0


@pytest.mark.parametrize("overrides", SMALL_GRID)
def test_outputs_without_autograd_are_the_outputs_with_it(overrides):
    """Inference takes its own shortcuts (the embedding-gate table, K-major weights, in-place cells; the input-feeding
    decoder looks its embeddings up only where they are read): every output is the same as under autograd."""
    model = tiny_model(**overrides)
    batch = make_batch()
    inputs = dict(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        decoder_input_ids=model.prepare_decoder_input_ids_from_labels(batch["labels"]),
        output_hidden_states=True,
        output_attentions=True,
    )
    with_grad = model(**inputs)
    with torch.no_grad():
        without = model(**inputs)
    for name in ("logits", "decoder_hidden_states", "encoder_hidden_states", "cross_attentions", "p_gen", "coverage"):
        torch.testing.assert_close(getattr(without, name), getattr(with_grad, name), atol=1e-5, rtol=0, msg=name)
    embeds = model.model.decoder.embed_tokens(inputs["decoder_input_ids"])
    torch.testing.assert_close(without.decoder_hidden_states[0], embeds, atol=0, rtol=0)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("overrides", SMALL_GRID)
def test_padded_batch_equals_each_example_alone(overrides, side):
    model = tiny_model(**overrides)
    batch = make_batch(padding_side=side)
    out = model(**batch)
    for i in range(batch["input_ids"].shape[0]):
        real = batch["attention_mask"][i].bool()
        alone = model(input_ids=batch["input_ids"][i : i + 1, real], labels=batch["labels"][i : i + 1])
        torch.testing.assert_close(alone.logits[0], out.logits[i], atol=1e-5, rtol=0)


def test_mask_with_holes_is_treated_as_the_real_tokens_in_order():
    model = tiny_model()
    batch = make_batch(batch_size=1, source_length=6)
    mask = torch.tensor([[1, 0, 1, 1, 0, 1]])
    out = model(input_ids=batch["input_ids"], attention_mask=mask, labels=batch["labels"])
    alone = model(input_ids=batch["input_ids"][:, mask[0].bool()], labels=batch["labels"])
    torch.testing.assert_close(out.logits, alone.logits, atol=1e-5, rtol=0)


def test_base_model_and_tuple_outputs(batch):
    torch.manual_seed(0)
    base = RNNSeq2SeqModel(tiny_config())
    decoder_input_ids = batch["labels"]
    out = base(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], decoder_input_ids=decoder_input_ids
    )
    assert isinstance(out, Seq2SeqModelOutput)
    assert out.last_hidden_state.shape == (*decoder_input_ids.shape, base.config.hidden_size)
    as_tuple = base(
        input_ids=batch["input_ids"], decoder_input_ids=decoder_input_ids, return_dict=False, use_cache=False
    )
    assert isinstance(as_tuple, tuple) and as_tuple[0].shape == out.last_hidden_state.shape
    lm = tiny_model()
    loss, logits = lm(**batch, return_dict=False)[:2]
    torch.testing.assert_close(loss, lm(**batch).loss)
    # Encoder outputs given as a tuple (return_dict=False style) work too.
    enc = lm.get_encoder()(batch["input_ids"], batch["attention_mask"], return_dict=False)
    again = lm(encoder_outputs=enc, attention_mask=batch["attention_mask"], labels=batch["labels"])
    torch.testing.assert_close(again.logits, logits)


def test_loss_ignores_minus_100_and_matches_manual_cross_entropy(batch):
    model = tiny_model()
    labels = batch["labels"].clone()
    labels[1, 2:] = -100
    labels[2, 3:] = -100
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels)
    keep = labels != -100
    manual = torch.nn.functional.cross_entropy(out.logits[keep], labels[keep])
    torch.testing.assert_close(out.loss, manual)
    # num_items_in_batch: summed loss over the given count (what Trainer passes under accumulation / DDP).
    scaled = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels, num_items_in_batch=100
    )
    torch.testing.assert_close(scaled.loss, manual * keep.sum() / 100)


def test_label_smoothing_is_in_the_model_loss(batch):
    plain = tiny_model()
    smoothed = tiny_model(label_smoothing=0.1)
    with torch.no_grad():  # freshly initialised logits are nearly uniform, where smoothing changes nothing
        for model in (plain, smoothed):
            model.lm_head.weight.mul_(100)
    out_plain, out_smooth = plain(**batch), smoothed(**batch)
    torch.testing.assert_close(out_plain.logits, out_smooth.logits)
    manual = torch.nn.functional.cross_entropy(
        out_smooth.logits.flatten(0, 1), batch["labels"].flatten(), label_smoothing=0.1
    )
    torch.testing.assert_close(out_smooth.loss, manual)
    assert not torch.allclose(out_plain.loss, out_smooth.loss)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("chunk_values", [1 << 19, 37])  # one chunk; chunks of 3 rows, the last one shorter
def test_token_cross_entropy_is_torchs_with_its_gradient(monkeypatch, smoothing, chunk_values):
    from hf_rnn_seq2seq import modeling_rnn_seq2seq as modeling

    monkeypatch.setattr(modeling, "_LOSS_CHUNK_VALUES", chunk_values)
    torch.manual_seed(0)
    logits = (torch.randn(10, 11, dtype=torch.float64) * 5).requires_grad_()
    labels = torch.tensor([3, -100, 0, 10, 7, -100, -100, 1, 2, 10])
    ours = modeling._TokenCrossEntropy.apply(logits, labels, smoothing)
    theirs = torch.nn.functional.cross_entropy(logits, labels, reduction="sum", label_smoothing=smoothing)
    torch.testing.assert_close(ours, theirs)
    # Backward through the loss and, as a caller may do, through the logits themselves in the same graph.
    weights = torch.randn(10, 11, dtype=torch.float64)
    grad_ours = torch.autograd.grad(2.5 * ours + (logits * weights).sum(), logits)[0]
    grad_theirs = torch.autograd.grad(2.5 * theirs + (logits * weights).sum(), logits)[0]
    torch.testing.assert_close(grad_ours, grad_theirs)
    assert torch.autograd.gradcheck(lambda z: modeling._TokenCrossEntropy.apply(z, labels, smoothing), (logits,))
    # Every token ignored: loss 0 and no gradient, as torch's sum.
    ignored = torch.full_like(labels, -100)
    loss = modeling._TokenCrossEntropy.apply(logits, ignored, smoothing)
    assert loss.item() == 0.0
    assert not torch.autograd.grad(loss, logits)[0].any()


@pytest.mark.parametrize("overrides", CONFIG_GRID)
def test_every_parameter_gets_a_finite_gradient_and_changes(overrides):
    model = tiny_model(**overrides, dropout=0.1).train()
    batch = make_batch()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model(**batch).loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"{name} got no gradient (unused parameter)"
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().max() > 0, f"{name} got an all-zero gradient"
    torch.optim.Adam(model.parameters(), lr=1e-2, eps=1e-30).step()  # a step of ~lr whatever the gradient scale
    for name, param in model.named_parameters():
        assert not torch.equal(before[name], param.detach()), f"{name} did not change after one step"


def test_tying_and_sharing():
    tied = tiny_model()
    assert tied.lm_head.weight is tied.model.shared.weight
    assert tied.model.encoder.embed_tokens is tied.model.decoder.embed_tokens
    assert tied.output_projection is not None  # E=8 != H=12: an H -> E projection precedes the tied output layer
    same_size = tiny_model(embedding_size=12)
    assert same_size.output_projection is None and same_size.lm_head.weight is same_size.model.shared.weight
    untied = tiny_model(tie_word_embeddings=False, share_encoder_decoder_embeddings=False)
    assert untied.lm_head.weight is not untied.model.decoder.embed_tokens.weight
    assert untied.model.encoder.embed_tokens is not untied.model.decoder.embed_tokens
    unshared_tied = tiny_model(share_encoder_decoder_embeddings=False)
    assert unshared_tied.lm_head.weight is unshared_tied.model.decoder.embed_tokens.weight


@pytest.mark.parametrize(
    "overrides",
    [dict(), dict(tie_word_embeddings=False), dict(share_encoder_decoder_embeddings=False)],
    ids=["tied", "untied", "unshared"],
)
def test_resize_token_embeddings_keeps_ties(overrides, batch):
    model = tiny_model(**overrides)
    model.resize_token_embeddings(VOCAB + 5)
    assert model.config.vocab_size == VOCAB + 5
    assert model.get_input_embeddings().num_embeddings == VOCAB + 5
    assert model.model.decoder.embed_tokens.num_embeddings == VOCAB + 5
    assert model.lm_head.out_features == VOCAB + 5
    if model.config.tie_word_embeddings:
        assert model.lm_head.weight is model.model.decoder.embed_tokens.weight
    out = model(**batch)
    assert out.logits.shape[-1] == VOCAB + 5
    new_ids = batch["input_ids"].clone()
    new_ids[0, 0] = VOCAB + 4
    model(input_ids=new_ids, labels=batch["labels"])


@pytest.mark.parametrize(
    "overrides",
    [dict(), dict(tie_word_embeddings=False), dict(share_encoder_decoder_embeddings=False, cell_type="gru")],
    ids=["tied", "untied", "unshared-gru"],
)
def test_save_load_is_bit_identical(tmp_path, overrides, batch):
    model = tiny_model(**overrides)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "generation_config.json").exists()
    for loader in (RNNSeq2SeqForConditionalGeneration, AutoModelForSeq2SeqLM):
        loaded = loader.from_pretrained(tmp_path).eval()
        assert type(loaded) is RNNSeq2SeqForConditionalGeneration
        for (name, p), (name2, q) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
            assert name == name2 and torch.equal(p, q), name
        assert torch.equal(model(**batch).logits, loaded(**batch).logits)
        if model.config.tie_word_embeddings:
            assert loaded.lm_head.weight is loaded.model.decoder.embed_tokens.weight
        kw = dict(max_length=8, num_beams=3)
        assert torch.equal(model.generate(batch["input_ids"], **kw), loaded.generate(batch["input_ids"], **kw))
    base = AutoModel.from_pretrained(tmp_path)
    assert type(base) is RNNSeq2SeqModel
    assert torch.equal(base.encoder.rnn.weight_ih_l0, model.model.encoder.rnn.weight_ih_l0)


def test_half_precision_load(tmp_path, batch):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    assert loaded.dtype == torch.bfloat16
    out = loaded(**batch)
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.logits).all() and torch.isfinite(out.loss)
    # bf16 and fp32 agree to bf16 precision
    torch.testing.assert_close(out.logits.float(), model(**batch).logits, atol=0.05, rtol=0.05)
    generated = loaded.generate(batch["input_ids"], attention_mask=batch["attention_mask"], max_length=6)
    assert generated.shape[0] == batch["input_ids"].shape[0]


def test_checkpoint_whose_config_does_not_match_its_weights(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    with pytest.raises(Exception, match=r"size mismatch|shape|mismatch"):
        AutoModelForSeq2SeqLM.from_pretrained(tmp_path, hidden_size=16)


def test_overfits_twenty_pairs_to_exact_match():
    """The lecture's number translation, 20 pairs: training to zero errors proves the whole path learns."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    sources = [torch.randint(4, VOCAB, (int(n),), generator=g) for n in torch.randint(2, 6, (20,), generator=g)]
    targets = [torch.cat([(s.flip(0) + 3) % (VOCAB - 4) + 4, torch.tensor([EOS])]) for s in sources]
    pad = torch.nn.utils.rnn.pad_sequence
    input_ids = pad(sources, batch_first=True, padding_value=PAD)
    attention_mask = (input_ids != PAD).long()
    labels = pad(targets, batch_first=True, padding_value=-100)
    model = RNNSeq2SeqForConditionalGeneration(tiny_config(embedding_size=16, hidden_size=32)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        optimizer.zero_grad()
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        optimizer.step()
    model.eval()
    generated = model.generate(input_ids, attention_mask=attention_mask, max_length=8)
    for row, target in zip(generated, targets, strict=True):
        out = row[1:].tolist()
        out = out[: out.index(EOS) + 1] if EOS in out else out
        assert out == target.tolist()


@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
def test_hand_written_input_feeding_cells_are_torchs_cells(cell_type):
    """The input-feeding loop steps nn.LSTM/nn.GRU's own weights by hand: it must compute exactly torch's cell."""
    from hf_rnn_seq2seq.modeling_rnn_seq2seq import _gru_cell, _lstm_cell

    torch.manual_seed(0)
    rnn = (torch.nn.LSTM if cell_type == "lstm" else torch.nn.GRU)(6, 5, batch_first=True)
    x, h, c = torch.randn(4, 1, 6), torch.randn(1, 4, 5), torch.randn(1, 4, 5)
    input_gates = torch.nn.functional.linear(x[:, 0], rnn.weight_ih_l0, rnn.bias_ih_l0)
    hidden_gates = torch.nn.functional.linear(h[0], rnn.weight_hh_l0, rnn.bias_hh_l0)
    if cell_type == "lstm":
        expected, (h_n, c_n) = rnn(x, (h, c))
        mine_h, mine_c, _ = _lstm_cell(input_gates + hidden_gates, c[0])
        torch.testing.assert_close(mine_c, c_n[0])
        gates = input_gates + hidden_gates
        in_place_h, in_place_c, kept = _lstm_cell(gates, c[0], inplace=True)  # inference: over its own gates
        torch.testing.assert_close(in_place_h, mine_h, rtol=0, atol=1e-6)  # the last bit may differ: σ over
        torch.testing.assert_close(in_place_c, mine_c, rtol=0, atol=1e-6)  # other slices vectorises otherwise
        assert kept is None
        assert in_place_h.data_ptr() == gates[:, 15:].data_ptr()  # h is the o slot of the gates: no new tensor
    else:
        expected, h_n = rnn(x, h)
        mine_h = _gru_cell(input_gates, hidden_gates, h[0])
    torch.testing.assert_close(mine_h, expected[:, 0])
    torch.testing.assert_close(mine_h, h_n[0])


@pytest.mark.parametrize("output_class", [RNNSeq2SeqEncoderOutput, RNNSeq2SeqModelOutput, RNNSeq2SeqLMOutput])
def test_outputs_behave_as_transformers_model_outputs(output_class):
    """Our outputs look their field names up once (`_FieldsLookedUpOnce`); in every use they must behave as a
    plain `ModelOutput` dataclass with the same fields: entries, order, attributes, later sets, the old cache name,
    a lone dict or (key, value) list as the first field, copies and pickles."""
    names = [field.name for field in dataclasses.fields(output_class)]
    reference_class = dataclasses.make_dataclass(
        "Reference", [(name, object, dataclasses.field(default=None)) for name in names], bases=(ModelOutput,)
    )
    a, b, c = torch.ones(2), torch.zeros(3), torch.arange(4)
    cases = [
        ((), {names[1]: a, names[3]: b}),  # keywords, the first field None
        ((a,), {}),  # the first field alone, a tensor
        ((a,), {names[-1]: c}),
        (({names[0]: a, names[2]: b},), {}),  # a lone dict: unpacked
        (([(names[1], b), (names[4], c)],), {}),  # a lone iterable of (key, value) pairs: unpacked
        (((a, b),), {}),  # a lone tuple that is not pairs: kept as the first field
        ((), {}),
    ]
    if "cache" in names:
        cases.append(((), {"past_key_values": a, names[0]: b}))  # transformers' old name of `cache`

    def state(output):
        return list(output.keys()), list(output.to_tuple()), [getattr(output, name) for name in names]

    def same(x, y):
        if isinstance(x, (list, tuple)):
            return type(x) is type(y) and len(x) == len(y) and all(same(u, v) for u, v in zip(x, y, strict=True))
        return torch.equal(x, y) if torch.is_tensor(x) and torch.is_tensor(y) else x == y

    for args, kwargs in cases:
        ours, reference = output_class(*args, **kwargs), reference_class(*args, **kwargs)
        assert same(state(ours), state(reference)), (args, kwargs)
        for output in (ours, reference):
            setattr(output, names[2], c)  # a later attribute set is an entry, an item set an attribute
            output[names[0]] = b
            if "cache" in names:
                output.past_key_values = a  # the old name sets `cache`
        assert same(state(ours), state(reference))
        expected = state(copy.deepcopy(reference))
        for clone in (copy.copy(ours), copy.deepcopy(ours), pickle.loads(pickle.dumps(ours))):
            assert type(clone) is output_class and same(state(clone), expected)
