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

import torch
from torch import nn
from transformers.generation.utils import ALL_CACHE_NAMES, GenerateBeamEncoderDecoderOutput

# transformers' "impossible" score: beams that must not be chosen get it added.
_NEG = -1.0e9


def beam_search(model, input_ids, logits_processor, stopping_criteria, generation_config, **model_kwargs):
    """`GenerationMixin._beam_search` (transformers 5.x) for an encoder-decoder, with the same arguments and results.

    Equal to transformers' own in every output whenever the returned hypotheses are finished ones (always, unless
    scores reach -1e9: transformers then fills the missing n-best entries with unfinished running beams of score
    -1e9, and the two may fill them with different ones)."""
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

    outputs = model._prefill(input_ids, config, model_kwargs, is_first_iteration=not config.is_assistant)
    while True:
        if outputs is None:
            model_inputs = model.prepare_inputs_for_generation(
                running, next_sequence_length=1 if model_kwargs["use_cache"] else None, **model_kwargs
            )
            outputs = model(**model_inputs, return_dict=True)
        model_kwargs = model._update_model_kwargs_for_generation(outputs, model_kwargs, is_encoder_decoder=True)

        # a copy: without a cache the logits of every position would stay alive through a view
        logits = outputs.logits[:, -1, :].to(copy=True, dtype=torch.float32, device=device)  # (B·K, V)
        log_probs = logits_processor(running, nn.functional.log_softmax(logits, dim=-1))  # (B·K, V)
        if return_dict:
            if output_logits:
                raw_logits += (logits.clone(),)
            if output_scores:
                all_scores += (log_probs.clone(),)
            if output_attentions:
                decoder_attentions += (outputs.decoder_attentions,)
                cross_attentions += (outputs.cross_attentions,)
            if output_hidden_states:
                decoder_hidden_states += (outputs.decoder_hidden_states,)
        outputs = None  # no reference to this step's logits past here

        # 1. The C best continuations of each source over all its beams: Σ log p so far + log p(token).
        vocab_size = log_probs.shape[-1]
        totals = (log_probs.view(batch_size, num_beams, vocab_size) + running_scores[:, :, None]).view(batch_size, -1)
        if do_sample:  # beam sampling: C draws without replacement, then sorted like topk
            picked = torch.multinomial(nn.functional.softmax(totals, dim=-1), num_samples=keep)
            candidate_scores = torch.gather(totals, 1, picked)
            candidate_scores, order = candidate_scores.sort(dim=-1, descending=True)
            picked = picked.gather(-1, order)
        else:
            candidate_scores, picked = torch.topk(totals, k=keep)  # (B, C)
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


def _merge_rows(kept, candidates, rows, fill):
    """The n-best list after a merge: `kept` (B, K, L') and `candidates` (B·C, L+1), L' <= L + 1, side by side as
    (B, K + C, L+1) (`kept` padded with `fill`), and the rows `rows` (B·K,) of that, flat."""
    batch_size, num_beams, width = kept.shape
    length = candidates.shape[1]
    if width < length:
        kept = nn.functional.pad(kept, (0, length - width), value=fill)
    merged = torch.cat([kept, candidates.view(batch_size, -1, length)], dim=1).view(-1, length)  # (B·(K+C), L+1)
    return merged.index_select(0, rows).view(batch_size, num_beams, length)
