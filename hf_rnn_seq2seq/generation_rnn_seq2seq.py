# Copyright 2026 The hf-rnn-seq2seq authors. Licensed under the Apache License, Version 2.0.
"""Beam search for `RNNSeq2SeqForConditionalGeneration.generate()`: transformers' algorithm, with its results, in fewer
operators per step.

transformers' `GenerationMixin._beam_search` keeps every hypothesis in buffers of the final length and moves whole
buffers with `take_along_dim` several times a step; for a recurrent model whose step is a few small products, that
bookkeeping was a quarter of a beam-5 `generate()` on CPU (~25 of ~92 ms for 30 sentences). Here the same steps run on
tensors as long as the hypotheses so far, rows are moved with one `index_select` each, and the merge of newly
finished hypotheses into the n-best runs only at the steps where one finishes. Everything `generate()` configures is
honoured the same way: logits processors and stopping criteria (called with the same arguments), `length_penalty`,
`early_stopping` (True, False, "never"), several EOS ids, `num_return_sequences`, beam sampling (`do_sample=True`,
drawing the same random numbers), and every `return_dict_in_generate` output (`sequences_scores`, `scores`,
`logits`, `beam_indices`, attentions, hidden states, `cache`). `tests/test_generation_rnn_seq2seq.py` compares it with
transformers' own in all of these.

Shape legend (as in `modeling_rnn_seq2seq.py`): B sources, K beams, C candidates kept per source and step
(max(2, 1 + number of EOS ids) · K), V the output width, L the length so far (prompt included).
"""

import inspect

import torch
from torch import nn
from transformers.generation import logits_process
from transformers.generation import stopping_criteria as criteria
from transformers.generation.utils import ALL_CACHE_NAMES, GenerateBeamEncoderDecoderOutput

# transformers' "impossible" score: beams that must not be chosen get it added.
_NEG = -1.0e9

# Logits processors and stopping criteria that treat each row on its own, from its ids and scores only (no per-row
# state, no batch index): with these, the rows of finished sources can leave the batch without changing any result.
_ROW_WISE_PROCESSORS = {
    getattr(logits_process, name)
    for name in (
        "MinLengthLogitsProcessor", "MinNewTokensLengthLogitsProcessor", "TemperatureLogitsWarper",
        "TopKLogitsWarper", "TopPLogitsWarper", "MinPLogitsWarper", "TypicalLogitsWarper", "EpsilonLogitsWarper",
        "EtaLogitsWarper", "RepetitionPenaltyLogitsProcessor", "NoRepeatNGramLogitsProcessor",
        "NoBadWordsLogitsProcessor", "SequenceBiasLogitsProcessor", "ForcedBOSTokenLogitsProcessor",
        "ForcedEOSTokenLogitsProcessor", "InfNanRemoveLogitsProcessor", "ExponentialDecayLengthPenalty",
        "LogitNormalization", "SuppressTokensLogitsProcessor", "SuppressTokensAtBeginLogitsProcessor",
    )
}  # fmt: skip
_ROW_WISE_CRITERIA = {criteria.MaxLengthCriteria, criteria.EosTokenCriteria, criteria.MaxTimeCriteria}
# generate()'s tensor kwargs the model reads, and whether each has one row per beam or one per source
_PER_ROW_KWARGS = ("extended_input_ids", "decoder_attention_mask")
_PER_SOURCE_KWARGS = ("attention_mask",)
# Rows of at least this many values are reduced in blocks on CPU (`topk_rows`, `argmax_rows`).
_BLOCKWISE_MIN_VALUES = 4096


def beam_search(model, input_ids, logits_processor, stopping_criteria, generation_config, **model_kwargs):
    """`GenerationMixin._beam_search` (transformers 5.x) for an encoder-decoder, with the same arguments and results.

    Equal to transformers' own in every output, with two exceptions. Hypotheses of exactly equal scores may come in
    another order, or another of them may be kept (`topk` orders and picks ties as it likes, and so does `topk_rows`
    in its own way; transformers sorts the n-best list again at every step, ours only when it changes). And when
    scores reach -1e9, transformers fills missing n-best entries with unfinished beams of score -1e9, and the two
    may fill them with different ones.

    With ids as the only output, a source leaves the batch as soon as its n-best list is final (its running beams
    can no longer beat its worst finished hypothesis, or with `early_stopping=True` it has K of them), where
    transformers keeps decoding it to the end: the results are the same, the model runs on fewer rows. Not with
    sampling, per-step outputs, or logits processors and stopping criteria that may depend on other rows."""
    config = generation_config
    pad_token_id, eos_token_id = config._pad_token_tensor, config._eos_token_tensor
    return_dict = config.return_dict_in_generate
    output_scores, output_logits = return_dict and config.output_scores, return_dict and config.output_logits
    output_attentions = return_dict and config.output_attentions
    output_hidden_states = return_dict and config.output_hidden_states
    early_stopping, length_penalty, max_length = config.early_stopping, config.length_penalty, config.max_length
    num_beams, do_sample = config.num_beams, config.do_sample
    device = input_ids.device

    batch_size = input_ids.shape[0] // num_beams
    cur_len = prompt_len = input_ids.shape[1]
    n_eos = eos_token_id.shape[0] if eos_token_id is not None else 0
    keep = max(2, 1 + n_eos) * num_beams  # C: enough candidates that K stay running when K of them end here
    fill = pad_token_id or eos_token_id[0] if eos_token_id is not None else -1  # transformers' fill, quirks included
    # flat row of beam 0 of each source, among the K running beams and among the C candidates
    beam_offsets = torch.arange(batch_size, device=device)[:, None] * num_beams  # (B, 1)
    candidate_offsets = torch.arange(batch_size, device=device)[:, None] * keep  # (B, 1)

    all_scores = () if output_scores else None
    raw_logits = () if output_logits else None
    decoder_attentions = () if output_attentions else None
    cross_attentions = () if output_attentions else None
    decoder_hidden_states = () if output_hidden_states else None

    # Running hypotheses, flat: row b·K + k is beam k of source b. Only beam 0 starts live (the others at -1e9), so
    # the first step does not pick the same token K times.
    running = input_ids  # (B·K, L)
    running_scores = torch.zeros(batch_size, num_beams, dtype=torch.float32, device=device)  # (B, K) Σ log p
    running_scores[:, 1:] = _NEG
    running_beams = input_ids.new_empty(batch_size * num_beams, 0, dtype=torch.int32) if return_dict else None
    # The n-best finished hypotheses per source, best first; empty slots hold the prompt, score -1e9, not finished.
    finished = input_ids.view(batch_size, num_beams, cur_len).clone()  # (B, K, L') L' <= L, padded with `fill`
    finished_scores = torch.full((batch_size, num_beams), _NEG, dtype=torch.float32, device=device)  # (B, K)
    is_finished = torch.zeros(batch_size, num_beams, dtype=torch.bool, device=device)  # (B, K)
    finished_lengths = torch.zeros(batch_size, num_beams, dtype=torch.long, device=device)  # (B, K) new tokens
    finished_beams = finished.new_full((batch_size, num_beams, 0), -1, dtype=torch.int32) if return_dict else None
    # per source: can a running beam still beat the worst finished one (transformers' early-stop heuristic)
    improvable = torch.ones(batch_size, 1, dtype=torch.bool, device=device)  # (B, 1)
    # A source whose n-best list can no longer change leaves the batch (transformers keeps decoding it): `sources`
    # holds the original index of each source still in it, `left` the n-best lists of those that left.
    drop = _rows_are_independent(config, logits_processor, stopping_criteria, model_kwargs, batch_size, num_beams)
    process = _processor_calls(logits_processor)
    sources, left = torch.arange(batch_size, device=device), []

    outputs = model._prefill(input_ids, config, model_kwargs, is_first_iteration=not config.is_assistant)
    while True:
        outputs, model_kwargs, logits = _decoder_step(model, running, outputs, model_kwargs)  # logits (B·K, V)
        # On CPU the log-probabilities are written over the logits, which nothing else reads unless they are an
        # output: a new tensor of this size costs fresh memory pages (150 × 32 000 values: 4.4 -> 3.3 ms a step).
        if output_logits or logits.device.type != "cpu":
            log_probs = nn.functional.log_softmax(logits, dim=-1)
        else:
            log_probs = torch.log_softmax(logits, dim=-1, out=logits)
        log_probs = process(running, log_probs)  # (B·K, V)
        if return_dict:
            if output_logits:
                raw_logits += (logits,)
            if output_scores:
                all_scores += (log_probs.clone(),)
            if output_attentions:
                decoder_attentions += (outputs.decoder_attentions,)
                cross_attentions += (outputs.cross_attentions,)
            if output_hidden_states:
                decoder_hidden_states += (outputs.decoder_hidden_states,)
        outputs = None  # no reference to this step's logits past here

        # 1. The C best continuations of each source over all its beams: Σ log p so far + log p(token), in place (the
        # scores kept for the output are a copy): a new tensor of this size costs fresh memory pages at every step.
        vocab_size = log_probs.shape[-1]
        totals = (
            log_probs.view(batch_size, num_beams, vocab_size).add_(running_scores[:, :, None]).view(batch_size, -1)
        )
        if do_sample:  # beam sampling: C draws without replacement, then sorted like topk
            picked = torch.multinomial(nn.functional.softmax(totals, dim=-1), num_samples=keep)
            candidate_scores = torch.gather(totals, 1, picked)
            candidate_scores, order = candidate_scores.sort(dim=-1, descending=True)
            picked = picked.gather(-1, order)
        else:
            candidate_scores, picked = topk_rows(totals, keep)  # (B, C)
        parents = (picked // vocab_size + beam_offsets).view(-1)  # (B·C,) flat running row each extends
        tokens = (picked % vocab_size).view(-1, 1)  # (B·C, 1)
        candidates = torch.cat([running.index_select(0, parents), tokens], dim=1)  # (B·C, L+1)
        candidate_beams = None
        if return_dict:
            candidate_beams = torch.cat([running_beams.index_select(0, parents), parents[:, None].int()], dim=1)
        ended = stopping_criteria(candidates, all_scores).view(batch_size, keep)  # (B, C)

        # 2. The K best candidates that did not end run on.
        candidate_scores_running = candidate_scores + ended.to(torch.float32) * _NEG
        chosen = torch.topk(candidate_scores_running, k=num_beams)[1]  # (B, K) positions among the C
        running_scores = candidate_scores_running.gather(1, chosen)
        chosen = (chosen + candidate_offsets).view(-1)  # (B·K,) rows of `candidates`
        running = candidates.index_select(0, chosen)
        beam_idx = parents.index_select(0, chosen)  # the recurrent state each new running beam continues
        if return_dict:
            running_beams = candidate_beams.index_select(0, chosen)

        # 3. Candidates among the top K that ended enter the n-best list if they beat its worst entry (transformers'
        # `_update_finished_beams`; when none ended, it would keep the list as it is).
        just_finished = ended[:, :num_beams]  # (B, K) only the top K may finish: the rest are reserves
        if just_finished.any():
            length = cur_len + 1 - prompt_len
            scores = candidate_scores / (length**length_penalty)  # (B, C)
            full = torch.all(is_finished, dim=-1, keepdim=True) & (early_stopping is True)
            scores += full.to(torch.float32) * _NEG
            scores += (~improvable).to(torch.float32) * _NEG
            did_finish = torch.zeros_like(ended)
            did_finish[:, :num_beams] = just_finished
            scores += (~did_finish) * _NEG
            merged_scores = torch.cat([finished_scores, scores], dim=1)  # (B, K + C)
            best = torch.topk(merged_scores, k=num_beams)[1]  # (B, K)
            finished_scores = merged_scores.gather(1, best)
            is_finished = torch.cat([is_finished, did_finish], dim=1).gather(1, best)
            new_lengths = finished_lengths.new_full((batch_size, keep), length)
            finished_lengths = torch.cat([finished_lengths, new_lengths], dim=1).gather(1, best)
            rows = (best + torch.arange(batch_size, device=device)[:, None] * (num_beams + keep)).view(-1)
            finished = _merge_rows(finished, candidates, rows, int(fill))
            if return_dict:
                finished_beams = _merge_rows(finished_beams, candidate_beams, rows, -1)

        # 4. Carry the recurrent state of the chosen beams; stop when no source can improve its n-best list.
        cache_key = next((key for key in ALL_CACHE_NAMES if key in model_kwargs), None)
        if cache_key is not None:
            if hasattr(model, "_reorder_cache"):
                model_kwargs[cache_key] = model._reorder_cache(model_kwargs[cache_key], beam_idx)
            elif hasattr(model_kwargs[cache_key], "reorder_cache"):
                model_kwargs[cache_key].reorder_cache(beam_idx)
            else:
                raise ValueError(f"{model.__class__.__name__} cannot use beam search with a cache it cannot reorder.")
        cur_len += 1
        improvable = model._check_early_stop_heuristic(
            improvable, running_scores, finished_scores, is_finished, cur_len, max_length, prompt_len,
            early_stopping, length_penalty,
        )  # fmt: skip
        if not model._beam_search_has_unfinished_sequences(improvable, is_finished, ended, early_stopping):
            break

        # 5. Sources that cannot improve, or (early_stopping=True) have K finished hypotheses, leave the batch:
        # transformers' merge would add -1e9 to every later candidate of theirs, so their n-best lists are final.
        if drop and (cache_key is None or hasattr(model_kwargs[cache_key], "select_rows")):
            done = ~improvable[:, 0]  # (B,)
            if early_stopping is True:
                done |= is_finished.all(dim=-1)
            if done.any():
                gone, kept = done.nonzero()[:, 0], (~done).nonzero()[:, 0]
                left.append((sources[gone], finished[gone], finished_lengths[gone]))
                rows = (kept[:, None] * num_beams + torch.arange(num_beams, device=device)).view(-1)  # (B'·K,)
                _select_sources(model_kwargs, cache_key, batch_size, kept, rows)
                running, running_scores = running.index_select(0, rows), running_scores[kept]
                sources, finished, finished_lengths = sources[kept], finished[kept], finished_lengths[kept]
                finished_scores, is_finished, improvable = finished_scores[kept], is_finished[kept], improvable[kept]
                batch_size = kept.shape[0]
                beam_offsets, candidate_offsets = beam_offsets[:batch_size], candidate_offsets[:batch_size]

    if left:  # back in the original order, padded to one width
        left.append((sources, finished, finished_lengths))
        width = max(part[1].shape[2] for part in left)
        order = torch.cat([part[0] for part in left]).argsort()
        finished = torch.cat(
            [nn.functional.pad(part[1], (0, width - part[1].shape[2]), value=int(fill)) for part in left]
        )
        finished, finished_lengths = finished[order], torch.cat([part[2] for part in left])[order]
        batch_size = finished.shape[0]

    # The n best of each source, cut to the longest of them (shorter ones end in `fill`).
    returned = config.num_return_sequences
    generated = int(finished_lengths[:, :returned].max())
    sequences = finished[:, :returned, : prompt_len + generated].reshape(batch_size * returned, -1)
    if not return_dict:
        return sequences
    beam_indices = finished_beams[:, :returned, :generated].reshape(batch_size * returned, -1)
    encoder_outputs = model_kwargs["encoder_outputs"]
    return GenerateBeamEncoderDecoderOutput(
        sequences=sequences,
        sequences_scores=finished_scores[:, :returned].reshape(-1) if output_scores else None,
        scores=all_scores,
        logits=raw_logits,
        beam_indices=beam_indices,
        encoder_attentions=encoder_outputs.get("attentions") if output_attentions else None,
        encoder_hidden_states=encoder_outputs.get("hidden_states") if output_hidden_states else None,
        decoder_attentions=decoder_attentions,
        cross_attentions=cross_attentions,
        decoder_hidden_states=decoder_hidden_states,
        cache=model_kwargs[cache_key] if cache_key is not None else None,
    )


def greedy_search(model, input_ids, logits_processor, stopping_criteria, generation_config, **model_kwargs):
    """`GenerationMixin._sample` for greedy decoding with ids as the only output, where the rows that have ended
    leave the batch (transformers keeps running them, appending padding, until the last one ends): the same ids, the
    model runs on fewer rows. The caller checks `uses_greedy_search` first."""
    device = input_ids.device
    pad_token_id = generation_config._pad_token_tensor  # None only when no row can end before the others
    process, stop = _processor_calls(logits_processor), _criteria_calls(stopping_criteria)
    batch_size = input_ids.shape[0]
    rows = torch.arange(batch_size, device=device)  # the original index of each row still running
    done = []  # (original indices, their sequences) of the rows that ended
    outputs = model._prefill(
        input_ids, generation_config, model_kwargs, is_first_iteration=not generation_config.is_assistant
    )
    while True:
        _, model_kwargs, logits = _decoder_step(model, input_ids, outputs, model_kwargs)  # logits (B, V)
        outputs = None
        tokens = argmax_rows(process(input_ids, logits))  # (B,)
        input_ids = torch.cat([input_ids, tokens[:, None]], dim=-1)  # (B, L+1)
        ended = stop(input_ids)  # (B,), or one bool for all rows
        if ended is False or (ended is not True and not ended.any()):
            continue
        if ended is True or ended.all():
            done.append((rows, input_ids))
            break
        gone, kept = ended.nonzero()[:, 0], (~ended).nonzero()[:, 0]
        done.append((rows[gone], input_ids[gone]))
        cache_key = next((key for key in ALL_CACHE_NAMES if key in model_kwargs), None)
        _select_sources(model_kwargs, cache_key, input_ids.shape[0], kept, kept)
        rows, input_ids = rows[kept], input_ids[kept]
    if len(done) == 1:  # every row ended at the same step
        return input_ids
    # every row padded to the longest, in the original order (transformers appends padding to ended rows)
    length = input_ids.shape[1]
    order = torch.cat([part[0] for part in done]).argsort()
    sequences = [nn.functional.pad(ids, (0, length - ids.shape[1]), value=int(pad_token_id)) for _, ids in done]
    return torch.cat(sequences)[order]


def _blocks(x: torch.Tensor, width: int) -> torch.Tensor:
    """The first M·width values of each row of `x` (R, N) as M = N // width blocks (R, M, width): a view where the
    rows' values are contiguous (a logits processor may return any layout)."""
    return x[:, : x.shape[1] - x.shape[1] % width].reshape(x.shape[0], -1, width)


def _block_width(n: int) -> int:
    return 64 if n < 100_000 else 128  # the fastest on this CPU: 8 000 and 32 000 words, 5 beams


def topk_rows(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`torch.topk(x, k)` along the rows of `x` (R, N): the k largest values, largest first, and their columns.

    On CPU, long rows (beam search's K·V scores) go in two passes: the maximum of each block of w values (`amax`,
    vectorised), then `torch.topk` over the k blocks with the largest maxima and the row's last N mod w values.
    The k largest values lie there: a value above the k-th largest block maximum lies in a block whose maximum is
    above it too, so only values equal to that maximum may come from another block (another column, the same
    value: ties, which `torch.topk` orders as it likes too). torch's CPU `topk` costs ~2.5 ns a value: 30 sources
    × 5 beams × 32 000 words, 11-13 ms a step, against 1.4-1.6 ms here (8 000 words: 2.6-3.2 against 0.6-0.7)."""
    rows, n = x.shape
    if x.device.type != "cpu" or n < _BLOCKWISE_MIN_VALUES or n < 2 * k * _block_width(n):
        return torch.topk(x, k)
    width = _block_width(n)
    blocks = _blocks(x, width)  # (R, M, w)
    best = torch.topk(blocks.amax(dim=-1), k, sorted=False).indices  # (R, k) the blocks of the k largest maxima
    candidates = blocks[torch.arange(rows, device=x.device)[:, None], best].view(rows, k * width)  # (R, k·w)
    full = blocks.shape[1] * width
    if full < n:
        candidates = torch.cat([candidates, x[:, full:]], dim=1)  # (R, k·w + N mod w)
    values, at = torch.topk(candidates, k)  # (R, k)
    slot = at.div(width, rounding_mode="floor").clamp_(max=k - 1)
    columns = best.gather(1, slot) * width + at - slot * width
    if full < n:
        columns = torch.where(at >= k * width, at - k * width + full, columns)
    return values, columns


def argmax_rows(x: torch.Tensor) -> torch.Tensor:
    """The column of each row's maximum in `x` (R, N), the first of equal maxima (NaN above all): `x.max(-1)`'s
    indices. On CPU, long rows go in two passes, as in `topk_rows`: each block's `amax` (vectorised), then the
    first block holding the row's maximum. torch's `max` with indices costs ~1.2 ns a value (30 rows × 32 000
    words: 1.1 ms a greedy step, ~20 % of it), this ~0.3 ms. (`max` itself is already faster than `argmax`: 1.9 ms.)"""
    rows, n = x.shape
    if x.device.type != "cpu" or n < _BLOCKWISE_MIN_VALUES:
        return x.max(dim=-1).indices
    width = _block_width(n)
    blocks = _blocks(x, width)  # (R, M, w)
    maxima = blocks.amax(dim=-1)  # (R, M)
    full = blocks.shape[1] * width
    if full < n:
        maxima = torch.cat([maxima, x[:, full:].amax(dim=-1, keepdim=True)], dim=1)  # the tail as block M
    block = maxima.max(dim=-1).indices  # (R,) the first block holding the maximum
    row_index = torch.arange(rows, device=x.device)
    in_block = blocks[row_index, block.clamp(max=blocks.shape[1] - 1)].max(dim=-1).indices
    columns = block * width + in_block
    if full < n:
        columns = torch.where(block == blocks.shape[1], full + x[:, full:].max(dim=-1).indices, columns)
    return columns


def _decoder_step(model, ids, outputs, model_kwargs):
    """One step of generation: the model's outputs for the hypotheses `ids` (the prefill's `outputs` at the first
    step), generate()'s kwargs updated with them, and the last position's logits (B, V) in float32.

    The logits are a copy when the model returned more than one position (a view would keep the logits of every
    position alive), otherwise the model's (B, 1, V) output itself: nothing else holds it (beam search writes the
    log-probabilities over it, greedy search's logits processors may change it in place). A copy costs
    more than it seems on CPU: beam 5 over 32 000 words would copy 19 MB a step into new memory pages, which the
    kernel maps and zeroes."""
    if outputs is None:
        model_inputs = model.prepare_inputs_for_generation(
            ids, next_sequence_length=1 if model_kwargs["use_cache"] else None, **model_kwargs
        )
        outputs = model(**model_inputs, return_dict=True)
    model_kwargs = model._update_model_kwargs_for_generation(outputs, model_kwargs, is_encoder_decoder=True)
    logits = outputs.logits[:, -1, :].to(copy=outputs.logits.shape[1] > 1, dtype=torch.float32, device=ids.device)
    return outputs, model_kwargs, logits


def uses_greedy_search(model_kwargs, generation_config, logits_processor, stopping_criteria, streamer=None) -> bool:
    """Whether `greedy_search` applies: greedy (not sampling), ids only, no streamer, row-wise processors and
    criteria, model inputs whose rows we know, and padding for rows that end early (when an EOS can end them)."""
    config = generation_config
    if config.do_sample or streamer is not None:
        return False
    if config._pad_token_tensor is None and any(type(c) is criteria.EosTokenCriteria for c in stopping_criteria):
        return False
    batch_size = model_kwargs["encoder_outputs"]["last_hidden_state"].shape[0]
    return _rows_are_independent(config, logits_processor, stopping_criteria, model_kwargs, batch_size, 1)


def _processor_calls(logits_processor):
    """`logits_processor(input_ids, scores)`, calling each processor directly when all of them take just those two
    arguments (`LogitsProcessorList` inspects every processor's signature at every step, ~20 µs each). The scores
    passed are the loop's own (nothing else reads them): `suppress_tokens` is written into them (`_suppress`)."""
    processors = list(logits_processor)
    if any(len(inspect.signature(p.__call__).parameters) > 2 for p in processors):
        return logits_processor  # it passes extra keyword arguments, or raises the error that they are missing
    processors = [_suppress(p) if type(p) is logits_process.SuppressTokensLogitsProcessor else p for p in processors]

    def process(input_ids, scores):
        for processor in processors:
            scores = processor(input_ids, scores)
        return scores

    return process


def _suppress(processor):
    """`SuppressTokensLogitsProcessor` writing -inf into the scores' columns of its tokens, in place: the same scores,
    where transformers' makes a mask over the vocabulary and a new (B, V) tensor at every step (~1 ms of a greedy
    `generate()` of 30 sentences over 560 words, 3 %)."""
    tokens, columns = processor.suppress_tokens, {}

    def suppress(input_ids, scores):
        width = scores.shape[-1]
        if width not in columns:  # ids outside the vocabulary suppress nothing, as in transformers' mask
            columns[width] = tokens[(tokens >= 0) & (tokens < width)].to(scores.device)
        return scores.index_fill_(-1, columns[width], -float("inf"))

    return suppress


def _criteria_calls(stopping_criteria):
    """`stopping_criteria(input_ids, None)` for greedy search: a (B,) bool tensor, or True (every row ended) or False
    (none did). Maximum lengths are compared as numbers (`MaxLengthCriteria` and the list would make two tensors a
    step); the other criteria are called as the list calls them, and their results or-ed."""
    # (a MaxLengthCriteria with max_position_embeddings may warn: it is called)
    lengths = [
        c for c in stopping_criteria if type(c) is criteria.MaxLengthCriteria and c.max_position_embeddings is None
    ]
    others = [c for c in stopping_criteria if all(c is not length for length in lengths)]
    max_length = min((c.max_length for c in lengths), default=None)

    def stop(input_ids):
        if max_length is not None and input_ids.shape[1] >= max_length:
            return True
        ended = False
        for criterion in others:
            rows = criterion(input_ids, None)
            ended = rows if ended is False else ended | rows
        return ended

    return stop


def _rows_are_independent(config, logits_processor, stopping_criteria, model_kwargs, batch_size, num_beams) -> bool:
    """Whether the rows of finished sources may leave the batch with every result unchanged: ids only (the per-step
    outputs of `return_dict_in_generate` would miss their rows), no sampling (fewer rows draw other random numbers),
    processors and criteria that treat each row on its own, and model inputs whose rows we know how to select."""
    if config.return_dict_in_generate or config.do_sample:
        return False
    for processor in logits_processor:
        if not (type(processor) in _ROW_WISE_PROCESSORS or getattr(type(processor), "rows_are_independent", False)):
            return False
        if torch.is_tensor(getattr(processor, "prompt_ignore_length", None)):  # a repetition penalty's per-row prompt
            return False
    if any(type(criterion) not in _ROW_WISE_CRITERIA for criterion in stopping_criteria):
        return False
    for key, value in model_kwargs.items():
        if key == "encoder_outputs":
            values = [v for v in value.values() if v is not None]
            values = [t for v in values for t in (v if isinstance(v, tuple) else (v,))]
        elif key in ALL_CACHE_NAMES:
            continue
        else:
            values = [value] if torch.is_tensor(value) else []
            if values and key not in _PER_ROW_KWARGS + _PER_SOURCE_KWARGS:
                return False
        if any(not torch.is_tensor(t) or t.shape[0] not in (batch_size, batch_size * num_beams) for t in values):
            return False
    return True


def _select_sources(model_kwargs, cache_key, batch_size, sources, rows) -> None:
    """Keeps the given sources (B',) of `batch_size`, and their beams' rows (B'·K,), in generate()'s model inputs
    (each tensor has one row per source or one per beam: `_rows_are_independent`) and cache."""

    def select(t):
        return t.index_select(0, sources if t.shape[0] == batch_size else rows)

    encoder_outputs = model_kwargs["encoder_outputs"]
    model_kwargs["encoder_outputs"] = type(encoder_outputs)(
        **{k: tuple(map(select, v)) if isinstance(v, tuple) else select(v) for k, v in encoder_outputs.items()}
    )
    for key in _PER_ROW_KWARGS + _PER_SOURCE_KWARGS:
        if torch.is_tensor(model_kwargs.get(key)):
            model_kwargs[key] = select(model_kwargs[key])
    if cache_key is not None:
        model_kwargs[cache_key].select_rows(rows, sources)


def _merge_rows(kept, candidates, rows, fill):
    """The n-best list after a merge: `kept` (B, K, L') and `candidates` (B·C, L+1), L' <= L + 1, side by side as
    (B, K + C, L+1) (`kept` padded with `fill`), and the rows `rows` (B·K,) of that, flat."""
    batch_size, num_beams, width = kept.shape
    length = candidates.shape[1]
    if width < length:
        kept = nn.functional.pad(kept, (0, length - width), value=fill)
    merged = torch.cat([kept, candidates.view(batch_size, -1, length)], dim=1).view(-1, length)  # (B·(K+C), L+1)
    return merged.index_select(0, rows).view(batch_size, num_beams, length)
