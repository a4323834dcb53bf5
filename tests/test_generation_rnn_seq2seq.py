"""generate(): the recurrent state under `cache`, beams, sampling, processors, outputs and streaming."""

import functools
import itertools
import operator

import pytest
import torch
from transformers import GenerationMixin
from transformers.generation.streamers import BaseStreamer

from hf_rnn_seq2seq.modeling_rnn_seq2seq import DEFAULT_MAX_LENGTH

from .conftest import BOS, EOS, SMALL_GRID, VOCAB, make_batch, tiny_model


def peaky(model, scale=30.0):
    """Sharpen the output distribution so that different decoding choices really differ."""
    with torch.no_grad():
        model.lm_head.weight.mul_(scale)
    return model


def source(batch_size=3, padding_side="right"):
    batch = make_batch(batch_size=batch_size, padding_side=padding_side)
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


@pytest.mark.parametrize("overrides", SMALL_GRID)
@pytest.mark.parametrize(
    "decoding",
    [
        dict(),
        dict(num_beams=4, num_return_sequences=2),
        dict(num_beams=3, length_penalty=0.5, early_stopping=True),
        dict(do_sample=True, temperature=0.8, top_k=5, num_return_sequences=3),
        dict(do_sample=True, top_p=0.9),
        dict(do_sample=True, num_beams=3),
    ],
    ids=["greedy", "beam-n2", "beam-lp", "sample-topk", "sample-topp", "beam-sample"],
)
def test_cached_generation_equals_uncached(overrides, decoding):
    model = peaky(tiny_model(**overrides))
    inputs = source()
    results = []
    for use_cache in (True, False):
        torch.manual_seed(7)
        out = model.generate(
            **inputs, max_length=9, use_cache=use_cache, return_dict_in_generate=True, output_scores=True, **decoding
        )
        results.append(out)
    cached, uncached = results
    assert torch.equal(cached.sequences, uncached.sequences)
    for a, b in zip(cached.scores, uncached.scores, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    if "num_beams" in decoding:
        torch.testing.assert_close(cached.sequences_scores, uncached.sequences_scores, atol=1e-5, rtol=0)


@pytest.mark.parametrize("overrides", SMALL_GRID)
def test_greedy_equals_a_hand_written_greedy_loop_and_one_beam(overrides):
    model = peaky(tiny_model(**overrides))
    inputs = source()
    generated = model.generate(**inputs, max_length=8)
    one_beam = model.generate(**inputs, max_length=8, num_beams=1, do_sample=False)
    assert torch.equal(generated, one_beam)
    # The oracle: recompute the whole prefix with the teacher-forced forward at every step, take the argmax.
    ids = torch.full((inputs["input_ids"].shape[0], 1), BOS)
    finished = torch.zeros(ids.shape[0], dtype=torch.bool)
    for _ in range(7):
        logits = model(**inputs, decoder_input_ids=ids, use_cache=False).logits[:, -1]
        next_ids = logits.argmax(-1).masked_fill(finished, model.config.pad_token_id)
        finished |= next_ids == EOS
        ids = torch.cat([ids, next_ids[:, None]], dim=1)
        if finished.all():
            break
    assert torch.equal(generated, ids)


def _exhaustive_best(model, inputs, max_new_tokens, length_penalty, k):
    """Score every possible output (ending in EOS, or cut at max_new_tokens) and return the best k."""
    vocab_size = model.config.vocab_size
    scored = []
    for length in range(1, max_new_tokens + 1):
        candidates = [
            tokens
            for tokens in itertools.product(range(vocab_size), repeat=length)
            if EOS not in tokens[:-1] and (tokens[-1] == EOS or length == max_new_tokens)
        ]
        targets = torch.tensor(candidates)  # (N, length)
        n = targets.shape[0]
        decoder_input_ids = torch.cat([torch.full((n, 1), BOS), targets[:, :-1]], dim=1)
        expanded = {key: value.expand(n, -1) for key, value in inputs.items()}
        log_probs = model(**expanded, decoder_input_ids=decoder_input_ids).logits.log_softmax(-1)
        totals = log_probs.gather(-1, targets[..., None]).squeeze(-1).sum(-1)  # (N,)
        scored += [
            (total / length**length_penalty, tokens) for total, tokens in zip(totals.tolist(), candidates, strict=True)
        ]
    scored.sort(reverse=True)
    return scored[:k]


@pytest.mark.parametrize("overrides", [dict(), dict(cell_type="gru", attention_type="additive")], ids=["lstm", "gru"])
def test_beam_search_equals_exhaustive_search_on_a_tiny_vocabulary(overrides):
    vocab_size = 8
    model = tiny_model(vocab_size=vocab_size, **overrides)
    with torch.no_grad():  # make EOS likely so that hypotheses of different lengths compete
        model.lm_head.weight.mul_(4)
        model.lm_head.weight[EOS].add_(0.3)
    max_new_tokens, length_penalty = 3, 1.0
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        inputs = {"input_ids": torch.randint(4, vocab_size, (1, 5), generator=g)}
        best = _exhaustive_best(model, inputs, max_new_tokens, length_penalty, k=2)
        out = model.generate(
            **inputs,
            num_beams=vocab_size**2,  # room for every prefix: beam search must then be exact
            num_return_sequences=2,
            max_new_tokens=max_new_tokens,
            length_penalty=length_penalty,
            early_stopping="never",
            return_dict_in_generate=True,
            output_scores=True,
        )
        for row, score, (best_score, best_tokens) in zip(out.sequences, out.sequences_scores, best, strict=True):
            tokens = row[1:].tolist()
            tokens = tokens[: tokens.index(EOS) + 1] if EOS in tokens else tokens
            assert tuple(tokens) == best_tokens
            assert score.item() == pytest.approx(best_score, abs=1e-4)


@pytest.mark.parametrize("side", ["right", "left"])
def test_padded_batch_generates_what_each_example_generates_alone(side):
    model = peaky(tiny_model())
    inputs = source(padding_side=side)
    for kwargs in (dict(), dict(num_beams=3)):
        batched = model.generate(**inputs, max_length=8, **kwargs)
        for i in range(batched.shape[0]):
            real = inputs["attention_mask"][i].bool()
            alone = model.generate(inputs["input_ids"][i : i + 1, real], max_length=8, **kwargs)[0]
            n = alone.shape[0]
            assert torch.equal(batched[i, :n], alone)
            # after the end: greedy pads with the pad id, beam search with pad-or-EOS (transformers' convention)
            assert ((batched[i, n:] == model.config.pad_token_id) | (batched[i, n:] == EOS)).all()


def test_logits_processors_and_limits():
    model = peaky(tiny_model())
    inputs = source()
    blocked = model.generate(**inputs, max_length=12, no_repeat_ngram_size=2, min_new_tokens=11)
    for row in blocked.tolist():
        bigrams = list(itertools.pairwise(row))
        assert len(bigrams) == len(set(bigrams)), "no_repeat_ngram_size=2 let a bigram repeat"
    banned = model.generate(**inputs, max_length=10, bad_words_ids=[[5], [7]])
    assert not ((banned == 5) | (banned == 7)).any()
    long = model.generate(**inputs, min_new_tokens=6, max_new_tokens=6)
    assert long.shape[1] == 7 and not (long[:, 1:6] == EOS).any()
    penalised = model.generate(**inputs, max_length=10, repetition_penalty=5.0, min_new_tokens=9)
    assert penalised.shape == (3, 10)


def test_generate_without_arguments_is_not_cut_at_20_tokens():
    model = tiny_model()
    assert model.generation_config.max_length == DEFAULT_MAX_LENGTH > 20  # stored, so Trainer and checkpoints see it
    out = model.generate(**source(batch_size=1), min_new_tokens=DEFAULT_MAX_LENGTH - 1)  # never stops early
    assert out.shape[1] == DEFAULT_MAX_LENGTH
    # An explicit limit, in the call or in the generation config, still wins.
    assert model.generate(**source(batch_size=1), min_new_tokens=30, max_new_tokens=30).shape[1] == 31
    assert model.generation_config.max_length == DEFAULT_MAX_LENGTH  # restored after a max_new_tokens-only call
    model.generation_config.max_length = 12
    assert model.generate(**source(batch_size=1), min_new_tokens=11).shape[1] == 12
    model.generation_config.max_length = None  # e.g. a checkpoint whose generation config has no limit
    assert model.generate(**source(batch_size=1), min_new_tokens=DEFAULT_MAX_LENGTH - 1).shape[1] == DEFAULT_MAX_LENGTH


def test_decoder_prompt_with_attention_mask_generates_like_without_it():
    model = peaky(tiny_model())
    inputs = source(batch_size=2)
    prompt = torch.tensor([[BOS, 12], [BOS, 14]])
    for use_cache in (True, False):
        with_mask = model.generate(
            **inputs,
            decoder_input_ids=prompt,
            decoder_attention_mask=torch.ones_like(prompt),
            max_new_tokens=4,
            use_cache=use_cache,
        )
        assert torch.equal(with_mask, model.generate(**inputs, decoder_input_ids=prompt, max_new_tokens=4))
        assert torch.equal(with_mask[:, :2], prompt)


def test_scores_transition_scores_and_cross_attentions():
    model = peaky(tiny_model(), scale=5)
    inputs = source()
    S = inputs["input_ids"].shape[1]
    out = model.generate(
        **inputs,
        max_new_tokens=5,
        num_beams=3,
        num_return_sequences=2,
        length_penalty=0.0,
        return_dict_in_generate=True,
        output_scores=True,
        output_attentions=True,
    )
    steps = out.sequences.shape[1] - 1
    assert len(out.scores) == steps and len(out.cross_attentions) == steps
    for step_attentions in out.cross_attentions:
        (attn,) = step_attentions
        assert attn.shape == (3 * 3, 1, 1, S)
    transition = model.compute_transition_scores(out.sequences, out.scores, out.beam_indices, normalize_logits=False)
    torch.testing.assert_close(transition.sum(-1), out.sequences_scores, atol=1e-4, rtol=0)
    greedy = model.generate(**inputs, max_new_tokens=5, return_dict_in_generate=True, output_scores=True)
    transition = model.compute_transition_scores(greedy.sequences, greedy.scores, normalize_logits=True)
    assert transition.shape == (3, greedy.sequences.shape[1] - 1) and (transition <= 0).all()


def test_streamer_receives_the_greedy_tokens_in_order():
    class Collect(BaseStreamer):
        def __init__(self):
            self.chunks, self.ended = [], False

        def put(self, value):
            self.chunks.append(value.flatten().tolist())

        def end(self):
            self.ended = True

    model = peaky(tiny_model())
    inputs = {k: v[:1] for k, v in source().items()}
    streamer = Collect()
    out = model.generate(**inputs, max_length=8, streamer=streamer)
    assert streamer.ended
    assert functools.reduce(operator.iadd, streamer.chunks, []) == out[0].tolist()


def test_assisted_decoding_is_refused_clearly():
    model = tiny_model()
    with pytest.raises(ValueError, match="stateful"):
        model.generate(**source(), assistant_model=tiny_model(seed=1), max_length=6)
    with pytest.raises(ValueError, match="stateful"):
        model.generate(**source(), prompt_lookup_num_tokens=2, max_length=6)


def test_generate_accepts_precomputed_encoder_outputs_and_rejects_unknown_kwargs():
    model = peaky(tiny_model())
    inputs = source()
    encoder_outputs = model.get_encoder()(**inputs)
    a = model.generate(**inputs, max_length=8, num_beams=2)
    b = model.generate(
        encoder_outputs=encoder_outputs, attention_mask=inputs["attention_mask"], max_length=8, num_beams=2
    )
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="oovs"):
        model.generate(**inputs, oovs=[["x"]], max_length=5)


@pytest.mark.parametrize(
    "overrides",
    [
        *SMALL_GRID,
        pytest.param(
            dict(
                use_copy=True,
                copy_extended_vocab=True,
                max_source_oovs=3,
                use_coverage=True,
                attention_type="additive",
            ),
            id="copyext-coverage",
        ),
    ],
)
def test_beams_sharing_one_copy_of_the_source_equal_transformers_expansion(monkeypatch, overrides):
    """generate() keeps one copy of each source for its beams (`_expand_inputs_for_generation`); the results are
    those of transformers' own expansion (every beam with its own copy of the encoder states)."""
    from transformers import GenerationMixin

    from hf_rnn_seq2seq import RNNSeq2SeqForConditionalGeneration

    model = peaky(tiny_model(**overrides))
    inputs = source()
    if model.config.copy_extended_vocab:
        inputs["extended_input_ids"] = inputs["input_ids"].clone()
    kwargs = dict(num_beams=3, num_return_sequences=2, max_new_tokens=6, coverage_penalty=0.2)
    if model.config.attention_type == "none":
        kwargs.pop("coverage_penalty")
    kwargs |= dict(output_scores=True, return_dict_in_generate=True)
    shared = model.generate(**inputs, **kwargs)
    monkeypatch.setattr(
        RNNSeq2SeqForConditionalGeneration,
        "_expand_inputs_for_generation",
        GenerationMixin._expand_inputs_for_generation,
    )
    copied = model.generate(**inputs, **kwargs)
    assert torch.equal(shared.sequences, copied.sequences)
    torch.testing.assert_close(shared.sequences_scores, copied.sequences_scores, rtol=1e-5, atol=1e-6)


def test_prepare_inputs_for_generation_equals_transformers():
    """Our lean `prepare_inputs_for_generation` gives the model what GenerationMixin's would, in every case
    generate() calls it with: the first step and later ones, with and without a cache, the decoder mask, the copy
    ids and the flags passed through, and `labels` dropped."""
    model = tiny_model(use_copy=True, copy_extended_vocab=True, max_source_oovs=3)
    batch = make_batch()
    with torch.no_grad():
        encoder_outputs = model.get_encoder()(batch["input_ids"], batch["attention_mask"])
        prefix = torch.tensor([[BOS, 5, 6]] * 3)
        source = {key: batch[key] for key in ("input_ids", "attention_mask")}
        cache = model(**source, decoder_input_ids=prefix, use_cache=True).cache
    common = dict(encoder_outputs=encoder_outputs, attention_mask=batch["attention_mask"], use_cache=True)
    cases = [
        dict(next_sequence_length=None, is_first_iteration=True, **common),
        dict(next_sequence_length=1, cache=cache, **common),
        dict(
            next_sequence_length=1,
            cache=cache,
            decoder_attention_mask=torch.ones(3, 3, dtype=torch.long),
            extended_input_ids=batch["input_ids"],
            output_attentions=True,
            labels=batch["labels"],
            **common,
        ),
        dict(next_sequence_length=None, inputs_embeds=torch.zeros(3, 3, 8), use_cache=False),
    ]
    reference = GenerationMixin.prepare_inputs_for_generation
    for kwargs in cases:
        mine, theirs = model.prepare_inputs_for_generation(prefix, **kwargs), reference(model, prefix, **kwargs)
        assert mine.keys() == theirs.keys()
        for key, value in theirs.items():
            if torch.is_tensor(value):
                assert torch.equal(mine[key], value), key
            else:
                assert mine[key] is value, key


BEAM_SEARCH_CASES = {
    "default": dict(num_beams=4),
    "n-best": dict(num_beams=4, num_return_sequences=4),
    "lp0-early": dict(num_beams=3, length_penalty=0.0, early_stopping=True, num_return_sequences=2),
    "lp2-never": dict(num_beams=3, length_penalty=2.0, early_stopping="never"),
    "lp-neg": dict(num_beams=5, length_penalty=-0.5, num_return_sequences=3),
    "two-eos": dict(num_beams=3, eos_token_id=[EOS, 7], num_return_sequences=3),
    "processors": dict(num_beams=4, min_new_tokens=3, no_repeat_ngram_size=2, repetition_penalty=1.3),
    "suppress": dict(
        num_beams=3, suppress_tokens=[*range(4, VOCAB, 3), -1, 10_000], num_return_sequences=2
    ),  # (ids outside V too)
    "beam-sample": dict(num_beams=3, do_sample=True, temperature=1.5, top_k=8, num_return_sequences=2),
    "no-cache": dict(num_beams=3, use_cache=False, num_return_sequences=2),
    "max-length-only": dict(num_beams=3, eos_token_id=None, pad_token_id=None),
}


class _EndSooner:
    """A logits processor that makes EOS likelier at every step, so that hypotheses end at different steps."""

    rows_are_independent = True  # each row's scores from its own ids: beam search may drop finished sources

    def __init__(self, rate=0.6):
        self.rate = rate

    def __call__(self, input_ids, scores):
        scores = scores.clone()
        scores[:, EOS] += self.rate * input_ids.shape[1] * (1 + input_ids.sum(dim=1) % 3)
        return scores


def _model_ending_early(overrides, batch_size):
    """A tiny model whose EOS is likely enough that hypotheses end at different steps, and left-padded sources."""
    model = tiny_model(**overrides)
    with torch.no_grad():
        eos_row = model.lm_head.weight[EOS]
        eos_row += model.lm_head.weight.std() * torch.randn(eos_row.shape, generator=torch.Generator().manual_seed(0))
    inputs = source(batch_size=batch_size, padding_side="left")
    if model.config.copy_extended_vocab:
        inputs["extended_input_ids"] = inputs["input_ids"].clone()
    return model, inputs


def _stop_on_token(token):
    """A user's stopping criterion: a hypothesis ends when its last token is `token`."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopOnToken(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return input_ids[:, -1] == token

    return StoppingCriteriaList([StopOnToken()])


@pytest.mark.parametrize("case", [*BEAM_SEARCH_CASES, "stopping-criterion", "copyext-coverage-penalty"])
@pytest.mark.parametrize("outputs", ["ids", "dict"])
def test_beam_search_equals_transformers_beam_search(monkeypatch, case, outputs):
    """Our beam search (`generation_rnn_seq2seq.py`) returns what transformers' `_beam_search` returns: the same
    sequences, and with `return_dict_in_generate` the same scores, logits, beam indices, attentions and hidden states,
    for every option that changes how hypotheses are chosen, end, are scored or are returned."""
    from hf_rnn_seq2seq import RNNSeq2SeqForConditionalGeneration

    overrides = {}
    kwargs = dict(BEAM_SEARCH_CASES.get(case, dict(num_beams=4, num_return_sequences=2)))
    if case == "copyext-coverage-penalty":
        overrides = dict(use_copy=True, copy_extended_vocab=True, max_source_oovs=3, use_coverage=True)
        kwargs["coverage_penalty"] = 0.3
        kwargs["logits_processor"] = [_EndSooner()]  # the copy mixture keeps EOS unlikely at initialisation
    model, inputs = _model_ending_early(overrides, batch_size=4)
    if case == "stopping-criterion":
        kwargs["stopping_criteria"] = _stop_on_token(9)
    kwargs["max_new_tokens"] = 12
    if outputs == "dict":
        kwargs |= dict(
            return_dict_in_generate=True,
            output_scores=True,
            output_logits=True,
            output_attentions=True,
            output_hidden_states=True,
        )

    def run():
        torch.manual_seed(11)
        return model.generate(**inputs, **kwargs)

    rows = []  # decoder rows of each forward
    hook = model.register_forward_pre_hook(
        lambda module, args, kw: rows.append(len(kw["decoder_input_ids"])), with_kwargs=True
    )
    ours = run()
    hook.remove()
    # finished sources leave the batch, except where the rows may depend on each other (sampling, a user's stopping
    # criterion), no source finishes early (no EOS; "never" with a positive length penalty), or per-step outputs
    if outputs == "ids" and case not in ("beam-sample", "stopping-criterion", "max-length-only", "lp2-never"):
        assert min(rows) < rows[0]
    else:
        assert min(rows) == rows[0]
    monkeypatch.setattr(RNNSeq2SeqForConditionalGeneration, "_beam_search", GenerationMixin._beam_search)
    theirs = run()
    if outputs == "ids":  # sources leave the batch once their n-best lists are final (not with dict outputs)
        # each source's n-best list, sorted: hypotheses with exactly equal scores (there is one such pair in
        # "n-best") may come in another order, as transformers sorts the list again at every step
        group = kwargs.get("num_return_sequences", 1)
        assert ours.shape == theirs.shape
        for mine, reference in zip(ours.split(group), theirs.split(group), strict=True):
            assert sorted(mine.tolist()) == sorted(reference.tolist())
        lengths = (theirs == EOS).float().argmax(dim=1)
        if case not in ("max-length-only", "stopping-criterion"):
            assert (theirs == EOS).any() and len(set(lengths.tolist())) > 1  # hypotheses ended at different steps
        return
    assert type(ours) is type(theirs) and ours.keys() == theirs.keys()
    for key in theirs.keys():
        mine, reference = ours[key], theirs[key]
        if key == "cache":
            for name in ("hidden", "cell", "input_feed", "coverage"):
                a, b = getattr(mine, name), getattr(reference, name)
                assert (a is None and b is None) or torch.equal(a, b), name
            continue
        flat_mine = [t for t in torch.utils._pytree.tree_leaves(mine) if torch.is_tensor(t)]
        flat_reference = [t for t in torch.utils._pytree.tree_leaves(reference) if torch.is_tensor(t)]
        assert len(flat_mine) == len(flat_reference), key
        for a, b in zip(flat_mine, flat_reference, strict=True):
            assert a.dtype == b.dtype and torch.equal(a, b), key


def _generate_scores(model, **kwargs):
    inputs = source()
    out = model.generate(
        **inputs, max_new_tokens=6, num_beams=3, output_scores=True, return_dict_in_generate=True, **kwargs
    )
    return out.sequences, out.sequences_scores


# What inference keeps between calls (`RNNSeq2SeqDecoder._derived`): the embedding-gate table, the K-major copies of
# the step weights and of the output layer's.
KEPT = ("embed_gates", "kmajor", "lm_head")


def _record_kept(model):
    """{name: number of times made} of the values the model's `_DerivedWeights` hands out from now on."""
    derived, made = model.model.decoder._derived, {}
    get = derived.get

    def spy(name, weights, make):
        def counted():
            made[name] = made.get(name, 0) + 1
            return make()

        value = get(name, weights, counted)
        if value is not None:
            made.setdefault(name, 0)
        return value

    derived.get = spy
    return made


def _keep_nothing(monkeypatch):
    """Switch off everything inference keeps: the products read the weights themselves."""
    from hf_rnn_seq2seq import modeling_rnn_seq2seq, recurrence_rnn_seq2seq

    monkeypatch.setattr(modeling_rnn_seq2seq, "_EMBED_GATE_TABLE_MAX", 0)
    for module in (modeling_rnn_seq2seq, recurrence_rnn_seq2seq):
        monkeypatch.setattr(module, "kmajor_applies", lambda *args: False)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(),
        dict(cell_type="gru"),
        dict(decoder_layers=2, use_copy=True, use_coverage=True),
        dict(attention_type="additive", tie_word_embeddings=False),
    ],
    ids=["lstm", "gru", "lstm-D2-copy-coverage", "additive-untied"],
)
def test_kept_inference_tensors_give_what_the_weights_give(monkeypatch, overrides):
    """In inference the input-feeding decoder looks W_e · emb(y) + b up in a (V, G·H) table, and multiplies by K-major
    copies of the step weights and of the output layer's (float32 on CPU): the outputs are those of the products by
    the weights themselves, to float32 rounding."""
    model = peaky(tiny_model(**overrides))
    made = _record_kept(model)
    sequences, scores = _generate_scores(model)
    assert made == {name: 1 for name in KEPT}  # each made once for the call's 6 steps
    _keep_nothing(monkeypatch)
    model.model.decoder._derived.clear()
    made.clear()
    reference_sequences, reference_scores = _generate_scores(model)
    assert not made
    assert torch.equal(sequences, reference_sequences)
    torch.testing.assert_close(scores, reference_scores, rtol=0, atol=1e-5)


def test_kept_inference_tensors_follow_weight_changes():
    """What inference keeps is kept between calls, and made anew after any change of the weights: an in-place edit,
    `load_state_dict` (copying or assigning new tensors), and any optimiser step, including the fused AdamW that
    `Trainer` uses by default, which updates the weights without bumping their version counters. A deep copy or a
    pickled model keeps nothing."""
    import copy
    import pickle

    model = peaky(tiny_model())
    made = _record_kept(model)

    def check(times):  # what a copy of the model, which keeps nothing, generates; and how often each was made
        ours = _generate_scores(model)
        reference = _generate_scores(copy.deepcopy(model))
        assert torch.equal(ours[0], reference[0])
        torch.testing.assert_close(ours[1], reference[1], rtol=0, atol=1e-6)
        assert made == {name: times for name in KEPT}

    check(1)
    _generate_scores(model)
    check(1)  # kept
    for optimizer_class, options in ((torch.optim.AdamW, dict(fused=True)), (torch.optim.SGD, {})):
        version = model.lm_head.weight._version
        model.train()
        optimizer = optimizer_class(model.parameters(), lr=0.5, **options)
        model(**make_batch()).loss.backward()
        optimizer.step()
        model.eval()
        if optimizer_class is torch.optim.AdamW:
            assert model.lm_head.weight._version == version  # torch does not see this update
        check(2 if optimizer_class is torch.optim.AdamW else 3)
    with torch.no_grad():
        model.model.decoder.rnn.bias_ih_l0.add_(0.5)
        model.model.decoder.attention.combine.weight.mul_(1.5)
        model.lm_head.weight.add_(0.1)
    check(4)
    model.load_state_dict(peaky(tiny_model(seed=5)).state_dict())
    check(5)
    model.load_state_dict(peaky(tiny_model(seed=6)).state_dict(), assign=True)
    check(6)
    unpickled = pickle.loads(pickle.dumps(model))
    assert unpickled.model.decoder._derived.kept("embed_gates") is None
    assert torch.equal(_generate_scores(unpickled)[0], _generate_scores(model)[0])


@pytest.mark.parametrize("layer", ["embedding", "combine", "lm_head"])
def test_kept_inference_tensors_are_not_used_past_a_hooked_layer(monkeypatch, layer):
    """A forward hook on a layer (or a wrapper such as PEFT's) may change its output: the model then runs the layer
    itself, as it does with nothing kept."""
    model = peaky(tiny_model())
    module = {
        "embedding": model.model.decoder.embed_tokens,
        "combine": model.model.decoder.attention.combine,
        "lm_head": model.lm_head,
    }[layer]
    plain = _generate_scores(model)
    model.model.decoder._derived.clear()
    made = _record_kept(model)
    module.register_forward_hook(lambda module, args, output: output * 3.0)
    hooked = _generate_scores(model)
    assert {"embedding": "embed_gates", "combine": "kmajor"}.get(layer, layer) not in made
    assert not torch.allclose(hooked[1], plain[1])  # the hook matters
    _keep_nothing(monkeypatch)
    reference = _generate_scores(model)
    assert torch.equal(hooked[0], reference[0])
    torch.testing.assert_close(hooked[1], reference[1], rtol=0, atol=1e-5)


def test_kmajor_copies_only_for_few_rows(monkeypatch):
    """K-major copies are used for steps of at most `_KMAJOR_MAX_ROWS` rows (they lose to the transposed read on
    larger products), not under autocast, and not for float64 weights."""
    from hf_rnn_seq2seq import recurrence_rnn_seq2seq

    model = peaky(tiny_model())
    made = _record_kept(model)
    monkeypatch.setattr(recurrence_rnn_seq2seq, "_KMAJOR_MAX_ROWS", 2)  # the 3 rows of `source()` are too many
    _generate_scores(model)
    assert "kmajor" not in made and "lm_head" not in made and "embed_gates" in made
    monkeypatch.undo()
    model.model.decoder._derived.clear()
    made.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _generate_scores(model)
    assert "kmajor" not in made
    _generate_scores(model.double())
    assert "kmajor" not in made


GREEDY_CASES = {
    "default": dict(),
    "processors": dict(min_new_tokens=3, no_repeat_ngram_size=2, repetition_penalty=1.3),
    "suppress": dict(suppress_tokens=[*range(4, VOCAB, 3), -1, 10_000]),  # (ids outside the vocabulary too)
    "two-eos": dict(eos_token_id=[EOS, 7]),
    "no-cache": dict(use_cache=False),
    "copyext-coverage": dict(),
    "streamer": dict(),
    "dict": dict(return_dict_in_generate=True, output_scores=True),
    "max-length-only": dict(eos_token_id=None, pad_token_id=None),
}


@pytest.mark.parametrize("case", GREEDY_CASES)
def test_greedy_search_equals_transformers_sample(monkeypatch, case):
    """Greedy decoding drops the rows that have ended from the batch (`generation_rnn_seq2seq.greedy_search`): the
    ids are transformers' `_sample`'s, padding included; with a streamer or per-step outputs it is transformers' own
    loop, every row to the end."""
    from hf_rnn_seq2seq import RNNSeq2SeqForConditionalGeneration, modeling_rnn_seq2seq

    ran = []
    greedy_search = modeling_rnn_seq2seq.greedy_search
    monkeypatch.setattr(modeling_rnn_seq2seq, "greedy_search", lambda *a, **k: ran.append(1) or greedy_search(*a, **k))

    overrides = {}
    kwargs = dict(GREEDY_CASES[case], max_new_tokens=12)
    if case == "copyext-coverage":
        overrides = dict(use_copy=True, copy_extended_vocab=True, max_source_oovs=3, use_coverage=True)
        kwargs["logits_processor"] = [_EndSooner(rate=0.1)]
    model, inputs = _model_ending_early(overrides, batch_size=6)

    class Collect(BaseStreamer):
        def put(self, value):
            pass

        def end(self):
            pass

    rows = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kw: rows.append(len(kw["decoder_input_ids"])), with_kwargs=True
    )
    ours = model.generate(**inputs, **kwargs, streamer=Collect() if case == "streamer" else None)
    hook.remove()
    assert bool(ran) == (case not in ("streamer", "dict"))  # ours, or transformers' loop
    if case in ("streamer", "dict", "max-length-only"):  # all rows to the end (without EOS no row ends early)
        assert min(rows) == rows[0]
    else:
        assert min(rows) < rows[0]
    monkeypatch.setattr(RNNSeq2SeqForConditionalGeneration, "_sample", GenerationMixin._sample)
    theirs = model.generate(**inputs, **kwargs)
    if case == "dict":
        ours, theirs = ours.sequences, theirs.sequences
    assert torch.equal(ours, theirs)
    if case != "max-length-only":
        ended_at = (theirs == EOS).float().argmax(dim=1)
        assert len(set(ended_at.tolist())) > 2 and (theirs == model.config.pad_token_id).any()  # rows ended apart


@pytest.mark.parametrize("n,k,width", [(64, 1, 4), (67, 5, 4), (4096, 10, 64), (5003, 10, 64), (130, 16, 8)])
def test_blockwise_topk_and_argmax_give_torchs_results(monkeypatch, n, k, width):
    """`topk_rows` and `argmax_rows` (long CPU rows in two passes) give `torch.topk`'s values and columns and
    `max`'s first maxima: rows that divide into blocks and rows with a tail, the maximum in the tail, ties, -inf
    and NaN."""
    from hf_rnn_seq2seq import generation_rnn_seq2seq as generation

    monkeypatch.setattr(generation, "_BLOCKWISE_MIN_VALUES", 0)
    monkeypatch.setattr(generation, "_block_width", lambda values: width)
    g = torch.Generator().manual_seed(n)
    distinct = torch.randn(6, n, generator=g)
    distinct[1, -1] = 10.0  # the maximum in the tail (when there is one)
    distinct[2, : n // 2] = -float("inf")
    values, columns = generation.topk_rows(distinct, k)
    expected = torch.topk(distinct, k)
    assert torch.equal(values, expected.values) and torch.equal(columns, expected.indices)
    assert torch.equal(generation.argmax_rows(distinct), distinct.max(dim=-1).indices)

    tied = torch.randint(0, 4, (6, n), generator=g).float()  # many equal values: any columns holding them will do
    tied[3] = -float("inf")
    tied[3, [5, n - 1]] = 2.0  # fewer finite values than k: -inf fills the rest
    values, columns = generation.topk_rows(tied, k)
    assert torch.equal(values, torch.topk(tied, k).values)
    assert torch.equal(tied.gather(1, columns), values)
    assert all(len(set(row)) == k for row in columns.tolist())  # k different columns
    assert torch.equal(generation.argmax_rows(tied), tied.max(dim=-1).indices)  # the first of equal maxima

    with_nan = distinct.clone()
    with_nan[0, 7] = float("nan")
    with_nan[4, [3, n - 2]] = float("nan")
    assert torch.equal(generation.argmax_rows(with_nan), with_nan.max(dim=-1).indices)
    values, columns = generation.topk_rows(with_nan, k)
    assert torch.equal(values.isnan(), torch.topk(with_nan, k).values.isnan())


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(num_beams=4),
        dict(num_beams=4, num_return_sequences=4, length_penalty=0.0),
        dict(num_beams=3, min_new_tokens=3, no_repeat_ngram_size=2),
        dict(num_beams=3, return_dict_in_generate=True, output_scores=True),
        dict(num_beams=1),
        dict(num_beams=1, eos_token_id=[EOS, 7]),
    ],
)
def test_generation_with_blockwise_reductions_equals_generation_without(monkeypatch, kwargs):
    """Beam search and greedy decoding through `topk_rows` / `argmax_rows` in blocks (forced here on a tiny
    vocabulary) choose what they choose through torch's reductions."""
    from hf_rnn_seq2seq import generation_rnn_seq2seq as generation

    model, inputs = _model_ending_early({}, batch_size=4)
    kwargs = dict(kwargs, max_new_tokens=10)
    expected = model.generate(**inputs, **kwargs)
    monkeypatch.setattr(generation, "_BLOCKWISE_MIN_VALUES", 0)
    monkeypatch.setattr(generation, "_block_width", lambda values: 4)
    calls = []
    for name in ("topk_rows", "argmax_rows"):
        monkeypatch.setattr(
            generation, name, functools.partial(lambda f, *a: calls.append(1) or f(*a), getattr(generation, name))
        )
    ours = model.generate(**inputs, **kwargs)
    assert calls  # the block path ran
    if kwargs.get("return_dict_in_generate"):
        assert torch.equal(ours.sequences, expected.sequences)
        assert torch.equal(ours.sequences_scores, expected.sequences_scores)
    else:
        assert torch.equal(ours, expected)


@pytest.mark.parametrize(
    "overrides",
    [dict(attention_type="additive"), dict(attention_type="additive", use_coverage=True, use_copy=True)],
    ids=["additive", "additive-coverage-copy"],
)
@pytest.mark.parametrize("num_beams", [1, 3])
def test_additive_scores_in_chunks_equal_the_whole_tensor(monkeypatch, overrides, num_beams):
    """Without autograd, additive attention makes its (B, T, S, H) tensor a few sources at a time on CPU: two
    sources per chunk here (of five: the last chunk is short), against the whole tensor at once."""
    from hf_rnn_seq2seq import modeling_rnn_seq2seq
    from hf_rnn_seq2seq.modeling_rnn_seq2seq import RNNSeq2SeqAttention

    model = peaky(tiny_model(**overrides))
    attention = model.model.decoder.attention
    if attention.coverage_weight is not None:  # initialised to zero: make the coverage term count
        with torch.no_grad():
            attention.coverage_weight.normal_(generator=torch.Generator().manual_seed(0))
    inputs = source(batch_size=5, padding_side="left")
    per_source = num_beams * inputs["input_ids"].shape[1] * model.config.hidden_size  # T·S·H for one source
    kwargs = dict(num_beams=num_beams, max_new_tokens=8, return_dict_in_generate=True, output_scores=True)
    kwargs |= dict(output_attentions=True)
    chunks = []
    original = RNNSeq2SeqAttention._additive_scores_in_place
    monkeypatch.setattr(
        RNNSeq2SeqAttention,
        "_additive_scores_in_place",
        lambda self, query, *args: chunks.append(query.shape[0]) or original(self, query, *args),
    )
    monkeypatch.setattr(modeling_rnn_seq2seq, "_ADDITIVE_CHUNK_VALUES", 2 * per_source)
    ours = model.generate(**inputs, **kwargs)
    assert chunks and max(chunks) == 5  # the chunked path ran, three chunks a call
    monkeypatch.setattr(RNNSeq2SeqAttention, "_chunks_apply", lambda self: False)
    whole = model.generate(**inputs, **kwargs)
    assert torch.equal(ours.sequences, whole.sequences)
    for a, b in zip(ours.scores, whole.scores, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for a, b in zip(ours.cross_attentions, whole.cross_attentions, strict=True):
        torch.testing.assert_close(a[0], b[0], rtol=1e-5, atol=1e-6)
