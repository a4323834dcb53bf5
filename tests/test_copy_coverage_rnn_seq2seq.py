"""Copy (pointer-generator) and coverage (See et al. 2017): invariants of the mixture and of the coverage, one code
path for training and generation, exhaustive-search checks of beam search and of the coverage penalty."""

import itertools

import pytest
import torch

from hf_rnn_seq2seq import CoveragePenaltyLogitsProcessor, RNNSeq2SeqForConditionalGeneration, RNNSeq2SeqLMOutput

from .conftest import (
    COPY_GRID,
    COPY_MODES,
    EOS,
    PAD,
    UNK,
    VOCAB,
    K,
    make_batch,
    make_copy_batch,
    tiny_config,
    tiny_model,
)


def batch_for(model, **kwargs):
    if model.config.copy_extended_vocab:
        return make_copy_batch(**kwargs)
    return make_batch(**kwargs)


def source_of(batch):
    return {k: v for k, v in batch.items() if k != "labels"}


def vocab_logits_hook(model):
    """Records the plain vocabulary logits (lm_head's output) of the next forward."""
    seen = {}
    handle = model.lm_head.register_forward_hook(lambda module, args, output: seen.__setitem__("logits", output))
    return seen, handle


@pytest.mark.parametrize("overrides", COPY_GRID)
def test_forward_and_step_by_step_equals_full_forward(overrides):
    """Every copy/coverage branch: shapes, finite loss, gradients reach every parameter, and feeding the tokens one
    at a time through the cache gives the teacher-forced logits."""
    model = tiny_model(**overrides)
    batch = batch_for(model)
    out = model(**batch, output_attentions=True)
    B, T = batch["labels"].shape
    assert isinstance(out, RNNSeq2SeqLMOutput)
    assert out.logits.shape == (B, T, model.config.extended_vocab_size)
    assert torch.isfinite(out.loss)
    assert (out.p_gen is not None) == model.config.use_copy
    assert (out.coverage is not None) == model.config.use_coverage
    out.loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad, f"parameters without gradient: {no_grad}"

    with torch.no_grad():
        decoder_input_ids = model.prepare_decoder_input_ids_from_labels(batch["labels"])
        encoder_outputs = model.get_encoder()(batch["input_ids"], batch["attention_mask"])
        cache, steps = None, []
        for t in range(T):
            step = model(
                encoder_outputs=encoder_outputs,
                attention_mask=batch["attention_mask"],
                extended_input_ids=batch.get("extended_input_ids"),
                decoder_input_ids=decoder_input_ids[:, t : t + 1],
                cache=cache,
                use_cache=True,
            )
            cache = step.cache
            steps.append(step.logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), out.logits.detach(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["copy", "copyext", "copyext-coverage"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_copy_distribution_invariants(mode, side):
    """P sums to 1 over Vx; 0 < p_gen < 1; each id gets p_gen·P_vocab plus (1 − p_gen)·(attention on its source
    positions); extended ids no source token holds get nothing; padding positions pass on no copy mass."""
    model = tiny_model(**COPY_MODES[mode])
    batch = batch_for(model, padding_side=side)
    assert (batch["attention_mask"] == 0).any()
    seen, handle = vocab_logits_hook(model)
    out = model(**batch, output_attentions=True)
    handle.remove()
    probs = out.logits.exp()  # (B, T, Vx)
    torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:2]), atol=1e-5, rtol=0)
    p_gen = out.p_gen  # (B, T)
    assert ((p_gen > 0) & (p_gen < 1)).all()
    alignment = out.cross_attentions[0][:, 0]  # (B, T, S)
    vocab_probs = torch.softmax(seen["logits"], dim=-1)  # (B, T, V)
    copy_ids = batch.get("extended_input_ids", batch["input_ids"])
    for b, t in itertools.product(range(probs.shape[0]), range(probs.shape[1])):
        for w in range(model.config.extended_vocab_size):
            expected = p_gen[b, t] * (vocab_probs[b, t, w] if w < VOCAB else 0.0)
            on_w = (copy_ids[b] == w) & batch["attention_mask"][b].bool()
            expected = expected + (1 - p_gen[b, t]) * alignment[b, t, on_w].sum()
            if expected == 0:  # an extended id that this source does not use
                assert probs[b, t, w] < 1e-30
            else:
                torch.testing.assert_close(probs[b, t, w], expected, atol=1e-6, rtol=1e-5)
    # the pad id sits on the padded source positions only: it gets generation mass and no copy mass
    torch.testing.assert_close(probs[..., PAD], p_gen * vocab_probs[..., PAD], atol=1e-7, rtol=1e-5)


def test_extended_ids_fed_back_are_read_as_unk():
    model = tiny_model(**COPY_MODES["copyext"])
    batch = make_copy_batch()
    decoder_input_ids = model.prepare_decoder_input_ids_from_labels(batch["labels"])
    assert (decoder_input_ids >= VOCAB).any()
    as_unk = decoder_input_ids.masked_fill(decoder_input_ids >= VOCAB, UNK)
    source = source_of(batch)
    torch.testing.assert_close(
        model(**source, decoder_input_ids=decoder_input_ids).logits, model(**source, decoder_input_ids=as_unk).logits
    )


@pytest.mark.parametrize("overrides", [p for p in COPY_GRID if "coverage" in p.id][:6])
def test_coverage_is_the_running_sum_of_previous_attention(overrides):
    model = tiny_model(**overrides)
    batch = batch_for(model)
    out = model(**batch, output_attentions=True)
    alignment = out.cross_attentions[0][:, 0]  # (B, T, S)
    expected = torch.cumsum(alignment, dim=1) - alignment  # Σ_{t'<t} a^{t'}: zero at the first step
    assert out.coverage[:, 0].abs().max() == 0
    torch.testing.assert_close(out.coverage, expected, atol=1e-6, rtol=0)


def test_coverage_loss_weight_and_token_normalisation():
    batch = make_batch()
    nll_only = tiny_model(use_coverage=True, coverage_loss_weight=0.0)
    weighted = tiny_model(use_coverage=True, coverage_loss_weight=2.0)  # same seed: same weights
    off, on = nll_only(**batch, output_attentions=True), weighted(**batch, output_attentions=True)
    torch.testing.assert_close(off.logits, on.logits)
    tokens = (batch["labels"] != -100).sum()
    nll = torch.nn.functional.cross_entropy(off.logits.flatten(0, 1), batch["labels"].flatten(), reduction="sum")
    torch.testing.assert_close(off.loss, nll / tokens)
    alignment = on.cross_attentions[0][:, 0]
    coverage_loss = torch.minimum(alignment, on.coverage).sum()
    assert coverage_loss > 0
    torch.testing.assert_close(on.loss, (nll + 2.0 * coverage_loss) / tokens)

    # with num_items_in_batch the coverage loss is summed and divided like the NLL: two halves add up to the whole
    labels = batch["labels"].clone()
    labels[1, 3:] = -100
    batch["labels"] = labels
    n = int((labels != -100).sum())
    whole = weighted(**batch, num_items_in_batch=n).loss * n
    halves = sum(
        weighted(**{k: v[rows] for k, v in batch.items()}, num_items_in_batch=n).loss * n
        for rows in (slice(0, 2), slice(2, 3))
    )
    torch.testing.assert_close(whole, halves)


def test_copy_loss_is_the_nll_of_the_mixture_with_label_smoothing():
    model = tiny_model(**COPY_MODES["copyext"], label_smoothing=0.1)
    batch = make_copy_batch()
    out = model(**batch)
    log_probs, labels = out.logits, batch["labels"]
    nll = -log_probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)  # (B, T)
    uniform = -log_probs[..., :VOCAB].mean(-1)
    torch.testing.assert_close(out.loss, (0.9 * nll + 0.1 * uniform).mean())


@pytest.mark.parametrize("mode", list(COPY_MODES))
@pytest.mark.parametrize(
    "decoding", [dict(), dict(num_beams=4, num_return_sequences=2), dict(num_beams=3, coverage_penalty=0.5)]
)
def test_cached_generation_equals_uncached(mode, decoding):
    model = tiny_model(**COPY_MODES[mode])
    source = source_of(batch_for(model))
    results = [
        model.generate(
            **source,
            max_new_tokens=6,
            use_cache=use_cache,
            return_dict_in_generate=True,
            output_scores=True,
            **decoding,
        )
        for use_cache in ((True, False) if "coverage_penalty" not in decoding else (True, True))
    ]
    assert torch.equal(results[0].sequences, results[1].sequences)
    for a, b in zip(results[0].scores, results[1].scores, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    if model.config.copy_extended_vocab:
        assert results[0].scores[0].shape[-1] == VOCAB + K


@pytest.mark.parametrize("decoding", [dict(), dict(num_beams=3)])
def test_copy_source_is_made_once_per_generation_and_again_for_other_ids_or_rows(monkeypatch, decoding):
    """The checked source ids and their same-id matrix depend on the source only: made at the first step, kept in
    the cache while the steps are given the same id tensors, made again from the ids a step is given otherwise (other
    ids, or rows selected or repeated)."""
    model = tiny_model(**COPY_MODES["copyext-coverage"])
    model.generation_config.eos_token_id = None  # every row runs to the end: the batch never changes
    source = source_of(make_copy_batch())
    checked = []
    original = model._copy_source_ids
    monkeypatch.setattr(model, "_copy_source_ids", lambda *args: checked.append(1) or original(*args))
    model.generate(**source, max_new_tokens=5, **decoding)
    assert len(checked) == 1

    ids = source["extended_input_ids"]
    same = (ids.unsqueeze(2) == ids.unsqueeze(1)).float()
    start = torch.full((3, 1), model.config.decoder_start_token_id)
    first = model(**source, decoder_input_ids=start, use_cache=True)
    cache = first.cache
    assert torch.equal(cache.copy_source[1], ids) and torch.equal(cache.copy_source[2], same)
    checked.clear()
    model(**source, decoder_input_ids=start, cache=cache)  # the same tensors: kept
    assert not checked
    other = dict(source, extended_input_ids=ids.flip(0), input_ids=source["input_ids"].flip(0))
    model(**other, decoder_input_ids=start, cache=cache)  # other ids, same shape: made from them
    assert len(checked) == 1 and torch.equal(cache.copy_source[1], ids.flip(0))
    for change in (
        lambda: cache.batch_select_indices(torch.tensor([2, 0, 1])),
        lambda: cache.select_rows(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2])),
        lambda: cache.batch_repeat_interleave(1),
    ):
        change()
        assert cache.copy_source is None  # made again from the (selected) ids of the next step
        model(**other, decoder_input_ids=start, cache=cache)
    cache.reorder_cache(torch.tensor([1, 0, 2]))  # beams move within their source's group: the sources stay
    assert torch.equal(cache.copy_source[1], ids.flip(0))


def exhaustive_scores(model, source, new_tokens, allowed):
    """Σ_t log P(y_t | y_<t, x) of every sequence of `new_tokens` ids from `allowed` (one forward per source row),
    and the summed attention of each (for the coverage penalty)."""
    candidates = torch.tensor(list(itertools.product(allowed, repeat=new_tokens)))  # (N, k)
    decoder_input_ids = torch.cat(
        [torch.full((len(candidates), 1), model.config.decoder_start_token_id), candidates[:, :-1]], dim=1
    )
    scores, attention = [], []
    for row in range(source["input_ids"].shape[0]):
        expanded = {k: v[row : row + 1].expand(len(candidates), -1) for k, v in source.items()}
        out = model(**expanded, decoder_input_ids=decoder_input_ids, output_attentions=True)
        log_probs = torch.log_softmax(out.logits, dim=-1)  # what beam search does (a no-op for copy log-probs)
        scores.append(log_probs.gather(-1, candidates.unsqueeze(-1)).squeeze(-1).sum(-1))  # (N,)
        attention.append(out.cross_attentions[0][:, 0].sum(1))  # (N, S) Σ_t a_t
    return candidates, torch.stack(scores), torch.stack(attention)


def gnmt_penalty(attention_sum, mask, beta):
    return beta * (attention_sum.clamp(min=torch.finfo(attention_sum.dtype).tiny, max=1.0).log() * mask).sum(-1)


@torch.no_grad()
@pytest.mark.parametrize("mode", ["copy", "copyext-coverage"])
def test_beam_search_equals_exhaustive_search(mode):
    """With as many beams as there are prefixes, beam search must return the exact top-2 of all sequences of 3
    tokens (EOS banned, no length penalty), here over the vocabulary and the copied OOV ids."""
    model = tiny_model(**COPY_MODES[mode], vocab_size=8)
    with torch.no_grad():
        model.model.decoder.copy_gate.bias.fill_(-3.0)  # mostly copying: the best hypotheses copy source tokens
    extended = mode.startswith("copyext")
    source = {
        "input_ids": torch.tensor([[3, 3, 3, 5, 3], [7, 3, 4, 0, 0]]),
        "attention_mask": torch.ones(2, 5, dtype=torch.long),
    }
    source["attention_mask"][1, 3:] = 0
    if extended:  # mostly source OOVs, so that the best hypotheses copy them
        source["extended_input_ids"] = torch.tensor([[8, 9, 8, 5, 9], [7, 8, 4, 0, 0]])
    allowed = [i for i in range(model.config.extended_vocab_size) if i != EOS]
    candidates, scores, _ = exhaustive_scores(model, source, 3, allowed)
    out = model.generate(
        **source,
        num_beams=len(allowed) ** 2,
        num_return_sequences=2,
        min_new_tokens=3,
        max_new_tokens=3,
        length_penalty=0.0,
        early_stopping=True,
        return_dict_in_generate=True,
        output_scores=True,
    )
    best = scores.topk(2, dim=-1)
    for row in range(2):
        for rank in range(2):
            assert out.sequences[row * 2 + rank, 1:].tolist() == candidates[best.indices[row, rank]].tolist()
            torch.testing.assert_close(out.sequences_scores[row * 2 + rank], best.values[row, rank], atol=1e-4, rtol=0)
    if extended:  # the test must exercise copying of OOV ids
        assert (out.sequences >= 8).any()


@torch.no_grad()
def test_coverage_penalty_changes_the_winner_towards_more_coverage():
    """GNMT's cp(x; y) = β Σ_i log(min(Σ_t a_{t,i}, 1)). With exhaustive beams, the winner under β maximises
    log P + cp (checked against enumeration), so its cp can only be higher than the unpenalised winner's; on some
    source it is a different hypothesis."""
    model = tiny_model(use_coverage=True, vocab_size=8, attention_type="dot")
    with torch.no_grad():  # larger weights: sharper attention, so that hypotheses really differ in what they cover
        for name, parameter in model.named_parameters():
            if name.endswith(("shared.weight", "weight_ih_l0", "weight_hh_l0")):
                parameter.mul_(10.0)
    torch.manual_seed(3)
    source = {"input_ids": torch.randint(4, 8, (6, 5)), "attention_mask": torch.ones(6, 5, dtype=torch.long)}
    allowed = [i for i in range(8) if i != EOS]
    candidates, scores, attention = exhaustive_scores(model, source, 3, allowed)
    beta = 2.0
    penalty = gnmt_penalty(attention, source["attention_mask"][:, None, :].float(), beta)  # (rows, N)
    winners = {}
    for b in (0.0, beta):
        out = model.generate(
            **source,
            num_beams=len(allowed) ** 2,
            min_new_tokens=3,
            max_new_tokens=3,
            length_penalty=0.0,
            coverage_penalty=b,
            return_dict_in_generate=True,
            output_scores=True,
        )
        index = [candidates.tolist().index(seq) for seq in out.sequences[:, 1:].tolist()]
        winners[b] = torch.tensor(index)
        expected = scores + (penalty if b else 0.0)
        assert index == expected.argmax(-1).tolist()
        torch.testing.assert_close(out.sequences_scores, expected.max(-1).values, atol=1e-4, rtol=0)
    rows = torch.arange(6)
    with_penalty, without = penalty[rows, winners[beta]], penalty[rows, winners[0.0]]
    assert (with_penalty >= without - 1e-6).all()
    assert (winners[beta] != winners[0.0]).any(), "the penalty should change at least one winner"
    assert (with_penalty > without).any()


def test_generate_returns_per_step_p_gen_coverage_and_attention():
    model = tiny_model(**COPY_MODES["copyext-coverage"])
    source = source_of(make_copy_batch())
    for decoding in (dict(), dict(num_beams=3)):
        out = model.generate(
            **source, max_new_tokens=5, output_attentions=True, return_dict_in_generate=True, **decoding
        )
        steps = out.sequences.shape[1] - 1
        rows = source["input_ids"].shape[0] * decoding.get("num_beams", 1)
        assert len(out.p_gen) == len(out.coverage) == len(out.cross_attentions) == steps
        assert all(p.shape == (rows, 1) and ((p > 0) & (p < 1)).all() for p in out.p_gen)
        assert all(c.shape == (rows, 1, source["input_ids"].shape[1]) for c in out.coverage)
        if not decoding:  # greedy: the second step's coverage is the first step's attention
            torch.testing.assert_close(out.coverage[1][:, 0], out.cross_attentions[0][0][:, 0, 0])
    plain = model.generate(**source, max_new_tokens=5, return_dict_in_generate=True)
    assert "p_gen" not in plain and model._generation_observer is None


def test_coverage_checkpoint_loads_into_a_coverage_config_and_trains_on(tmp_path):
    """See et al.'s recipe: train without coverage, then switch it on. The new weights are reported as newly
    initialised, start at zero (so the outputs are unchanged) and train."""
    plain = tiny_model()
    plain.save_pretrained(tmp_path)
    model, info = RNNSeq2SeqForConditionalGeneration.from_pretrained(
        tmp_path, use_coverage=True, output_loading_info=True
    )
    assert info["missing_keys"] == {"model.decoder.attention.coverage_weight"}
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    assert model.model.decoder.attention.coverage_weight.abs().max() == 0
    batch = make_batch()
    model.eval()
    torch.testing.assert_close(model(**batch).logits, plain(**batch).logits)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    assert model.model.decoder.attention.coverage_weight.abs().max() > 0
    assert torch.isfinite(model(**batch).loss)


@pytest.mark.parametrize(
    "overrides, error",
    [
        (dict(use_copy=True, attention_type="none", input_feeding=False), "needs attention"),
        (dict(use_coverage=True, attention_type="none", input_feeding=False), "needs attention"),
        (dict(copy_extended_vocab=True), "use_copy=True"),
        (dict(use_copy=True, copy_extended_vocab=True, max_source_oovs=0), "max_source_oovs"),
        (dict(use_coverage=True, coverage_loss_weight=-1.0), "coverage_loss_weight"),
        (dict(use_copy=True, copy_extended_vocab=True, unk_token_id=None), "unk_token_id"),
    ],
)
def test_config_rejects_invalid_copy_and_coverage_settings(overrides, error):
    with pytest.raises(Exception, match=error):
        tiny_config(**overrides)


def test_bad_copy_inputs_get_clear_errors():
    batch = make_copy_batch()
    plain = tiny_model(use_copy=True)
    with pytest.raises(ValueError, match="extended vocabulary"):
        plain(**batch)
    model = tiny_model(**COPY_MODES["copyext"])
    with pytest.raises(ValueError, match=r"extended_input_ids.*shape"):
        model(**dict(batch, extended_input_ids=batch["extended_input_ids"][:, :-1]))
    with pytest.raises(ValueError, match="outside"):
        model(**dict(batch, extended_input_ids=batch["extended_input_ids"] + VOCAB + K))
    wrong = batch["extended_input_ids"].clone()
    wrong[0, 1] = (wrong[0, 1] + 1) % VOCAB
    with pytest.raises(ValueError, match="disagree"):
        model(**dict(batch, extended_input_ids=wrong))
    with pytest.raises(ValueError, match="labels"):
        model(**dict(batch, labels=batch["labels"] + VOCAB + K))
    encoder_tuple = model.get_encoder()(batch["input_ids"], batch["attention_mask"], return_dict=False)
    with pytest.raises(ValueError, match="source token ids"):
        model(encoder_outputs=encoder_tuple, attention_mask=batch["attention_mask"], labels=batch["labels"])
    source = source_of(batch)
    with pytest.raises(ValueError, match="coverage_penalty"):
        model.generate(**source, num_beams=2, coverage_penalty=-1.0)
    with pytest.raises(ValueError, match="use_cache=True"):
        model.generate(**source, num_beams=2, coverage_penalty=0.2, use_cache=False)
    with pytest.raises(ValueError, match="attention_type='none'"):
        tiny_model(attention_type="none", input_feeding=False).generate(**make_batch(), coverage_penalty=0.2)
    with pytest.raises(ValueError, match="needs the model's attention"):
        CoveragePenaltyLogitsProcessor(0.2)(torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, VOCAB))


@pytest.mark.parametrize("mode", ["copy", "copyext"])
def test_log_space_mixture_equals_the_probability_formula_with_its_gradients(mode):
    """The model computes log P in log space and writes each source id once per occurrence; values and gradients
    must equal those of the plain formula log(p_gen · softmax(z) + (1 − p_gen) · scatter_add(a)), repeated ids
    included."""
    model = tiny_model(**COPY_MODES[mode])
    width = model.config.extended_vocab_size
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, VOCAB, generator=g, requires_grad=True)
    p_gen = torch.rand(2, 3, generator=g).clamp(0.05, 0.95).requires_grad_()
    alignment = torch.softmax(torch.randn(2, 3, 5, generator=g), dim=-1).requires_grad_()
    source_ids = torch.tensor([[5, 7, 5, 5, 9], [VOCAB + 1, 6, VOCAB + 1, 8, 6]])
    if mode == "copy":
        source_ids = source_ids.clamp(max=VOCAB - 1)
    weights = torch.randn(2, 3, width, generator=g)  # a generic downstream loss

    def gradients(log_probs):
        return torch.autograd.grad((log_probs * weights).sum(), (logits, p_gen, alignment))

    ours, loss = model._copy_mixture(logits, p_gen, alignment, source_ids)
    assert loss is None  # no labels, no loss
    vocab = torch.nn.functional.pad(torch.softmax(logits, -1), (0, width - VOCAB))
    index = source_ids.unsqueeze(1).expand(2, 3, 5)
    reference = (p_gen.unsqueeze(-1) * vocab).scatter_add(-1, index, (1 - p_gen.unsqueeze(-1)) * alignment)
    used = reference > 0
    torch.testing.assert_close(ours[used], reference.log()[used])
    for a, b in zip(gradients(ours.masked_fill(~used, 0)), gradients(reference.clamp_min(1e-30).log()), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("mode", ["copy", "copyext-coverage"])
def test_copy_mixture_without_autograd_equals_it_with_autograd(mode, smoothing):
    """Where no gradient is taken the mixture skips what only its backward reads (the first-occurrence mask) and the
    autograd Function: the model's log-probabilities and loss are those computed under autograd, and so are those
    of beams sharing their source's row (g rows per source, as generate() passes them)."""
    model = tiny_model(**COPY_MODES[mode], label_smoothing=smoothing)
    batch = batch_for(model)
    with_grad = model(**batch)
    with torch.no_grad():
        without = model(**batch)
    torch.testing.assert_close(without.logits, with_grad.logits, atol=0, rtol=0)
    torch.testing.assert_close(without.loss, with_grad.loss, atol=0, rtol=0)
    g = torch.Generator().manual_seed(0)
    source_ids = batch.get("extended_input_ids", batch["input_ids"])  # (B_src, S)
    beams = 2  # rows 2b and 2b + 1 read source b
    logits = torch.randn(beams * source_ids.shape[0], 1, VOCAB, generator=g, requires_grad=True)
    p_gen = torch.rand(logits.shape[0], 1, generator=g)
    alignment = torch.softmax(torch.randn(logits.shape[0], 1, source_ids.shape[1], generator=g), -1)
    grad_out, _ = model._copy_mixture(logits, p_gen, alignment, source_ids)
    with torch.no_grad():
        out, _ = model._copy_mixture(logits, p_gen, alignment, source_ids)
        per_row, _ = model._copy_mixture(logits, p_gen, alignment, source_ids.repeat_interleave(beams, dim=0))
    torch.testing.assert_close(out, grad_out, atol=0, rtol=0)
    torch.testing.assert_close(out, per_row, atol=0, rtol=0)


@pytest.mark.parametrize("extra_ids", [0, 2])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("chunk_values", [1 << 19, 25])  # the (B·T, V) rows in one chunk; in chunks of 4 and 2 rows
def test_copy_mixture_backward_passes_gradcheck(monkeypatch, extra_ids, smoothing, chunk_values):
    """The hand-written backward of the mixture and of its token loss against finite differences (float64), repeated
    source ids, ignored tokens and labels that are extended ids included; the output and the loss used together, as
    a caller that also reads the logits does."""
    from hf_rnn_seq2seq import modeling_rnn_seq2seq as modeling
    from hf_rnn_seq2seq.modeling_rnn_seq2seq import _LogCopyMixture

    monkeypatch.setattr(modeling, "_LOSS_CHUNK_VALUES", chunk_values)
    g = torch.Generator().manual_seed(0)
    vocab, source_ids = 6, torch.tensor([[1, 4, 1, 6 if extra_ids else 3], [2, 2, 5, 7 if extra_ids else 0]])
    same = (source_ids.unsqueeze(2) == source_ids.unsqueeze(1)).double()
    first = (same.tril(diagonal=-1).sum(-1) == 0).unsqueeze(1)
    index = source_ids.unsqueeze(1).expand(2, 3, 4)
    labels = torch.tensor([[1, 0, -100], [5, 6 if extra_ids else 2, 2]])
    p_gen = torch.rand(2, 3, 1, generator=g, dtype=torch.float64).clamp(0.1, 0.9)
    inputs = (
        torch.randn(2, 3, vocab, generator=g, dtype=torch.float64, requires_grad=True),
        p_gen.log().requires_grad_(),
        (1 - p_gen).log().requires_grad_(),
        torch.softmax(torch.randn(2, 3, 4, generator=g, dtype=torch.float64), -1).requires_grad_(),
    )
    weights = torch.randn(2, 3, vocab + extra_ids, generator=g, dtype=torch.float64)

    def mixture(logits, log_p_gen, log_p_copy, alignment, labels=None):  # a repeated id's copy mass: one shared sum
        args = (logits, log_p_gen, log_p_copy, alignment @ same, index, first, extra_ids, labels, smoothing)
        return _LogCopyMixture.apply(*args)

    assert torch.autograd.gradcheck(lambda *x: mixture(*x)[0], inputs)
    assert torch.autograd.gradcheck(lambda *x: mixture(*x, labels=labels)[1], inputs)
    assert torch.autograd.gradcheck(
        lambda *x: (mixture(*x, labels=labels)[0] * weights).sum() + mixture(*x, labels=labels)[1], inputs
    )
    # The loss is the NLL of the output, with label smoothing over the V vocabulary ids.
    out, loss = mixture(*inputs, labels=labels)
    valid = labels != -100
    nll = -out.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(loss, ((1 - smoothing) * nll - smoothing * out[..., :vocab].mean(-1))[valid].sum())


def test_copy_coverage_model_round_trips_through_save_and_auto_load(tmp_path):
    from transformers import AutoModelForSeq2SeqLM

    model = tiny_model(**COPY_MODES["copyext-coverage"], coverage_loss_weight=0.5)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    assert reloaded.config.extended_vocab_size == VOCAB + K and reloaded.config.coverage_loss_weight == 0.5
    batch = make_copy_batch()
    torch.testing.assert_close(reloaded(**batch).logits, model(**batch).logits, atol=0, rtol=0)
    source = source_of(batch)
    kwargs = dict(num_beams=3, max_new_tokens=6, coverage_penalty=0.3)
    assert torch.equal(reloaded.generate(**source, **kwargs), model.generate(**source, **kwargs))
