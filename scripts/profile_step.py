"""Where the time of one training step and one decoding step goes: `torch.profiler` tables on generated batches.

    python scripts/profile_step.py                                   # peer configuration, general attention
    python scripts/profile_step.py --attention_type additive --use_copy --use_coverage --copy_extended_vocab
    python scripts/profile_step.py --what decode --num_beams 5 --rows 25

The batches have the shape of the peer benchmark's copy/reverse corpus (../shared/bench/peers: 64 sentences of 3-25
tokens, a 560-token vocabulary). Training: forward + backward + Adam step; decoding: one `generate()` call on 30
sentences with `--num_beams`, at a fixed output length. The table lists the operators by their own ("self") CPU time,
averaged over `--steps` profiled steps after warm-up; the first line gives the wall time per step.
"""

import argparse
import os
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--what", choices=["train", "decode", "both"], default="both")
    p.add_argument("--vocab_size", type=int, default=560)
    p.add_argument("--attention_type", default="general", choices=["none", "dot", "general", "additive"])
    p.add_argument("--use_copy", action="store_true")
    p.add_argument("--copy_extended_vocab", action="store_true")
    p.add_argument("--use_coverage", action="store_true")
    p.add_argument("--input_feeding", type=int, default=1)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--length", type=int, nargs=2, default=[3, 25], help="min and max source/target length")
    p.add_argument("--num_beams", type=int, default=5)
    p.add_argument("--decode_batch_size", type=int, default=30)
    p.add_argument("--decode_length", type=int, default=20)
    p.add_argument("--steps", type=int, default=5, help="profiled steps (after 3 warm-up steps)")
    p.add_argument("--rows", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args()


def main():
    args = parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch
    from torch.profiler import ProfilerActivity, profile

    from hf_rnn_seq2seq import RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration

    torch.set_num_threads(args.threads)
    config = RNNSeq2SeqConfig(
        vocab_size=args.vocab_size,
        embedding_size=128,
        hidden_size=256,
        encoder_layers=1,
        decoder_layers=1,
        attention_type=args.attention_type,
        input_feeding=bool(args.input_feeding),
        dropout=0.3,
        bridge="last",
        use_copy=args.use_copy,
        copy_extended_vocab=args.copy_extended_vocab,
        max_source_oovs=20,
        use_coverage=args.use_coverage,
    )
    torch.manual_seed(0)
    model = RNNSeq2SeqForConditionalGeneration(config)
    g = torch.Generator().manual_seed(0)

    def batch(size, pad_value):
        lengths = torch.randint(args.length[0], args.length[1] + 1, (size,), generator=g)
        ids = torch.randint(4, args.vocab_size, (size, int(lengths.max())), generator=g)
        mask = torch.arange(ids.shape[1])[None, :] < lengths[:, None]
        inputs = {"input_ids": ids.masked_fill(~mask, pad_value), "attention_mask": mask.long()}
        if config.copy_extended_vocab:  # every 10th source token is an OOV with its own extended id
            oov = (torch.arange(ids.shape[1]) % 10 == 0)[None, :] & mask
            slots = (oov.cumsum(1) - 1).clamp(max=config.max_source_oovs - 1)
            inputs["extended_input_ids"] = torch.where(oov, config.vocab_size + slots, inputs["input_ids"])
            inputs["input_ids"] = inputs["input_ids"].masked_fill(oov, config.unk_token_id)
        return inputs

    def report(title, prof, steps, wall):
        print(f"\n== {title}: {wall / steps * 1000:.1f} ms per step (wall, profiled), threads {args.threads}")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=40))

    if args.what in ("train", "both"):
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        batches = []
        for _ in range(args.steps + 3):
            inputs = batch(args.batch_size, config.pad_token_id)
            labels = batch(args.batch_size, -100)["input_ids"]
            batches.append((inputs, labels))

        def train_step(inputs, labels):
            optimizer.zero_grad(set_to_none=True)
            model(**inputs, labels=labels).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()

        for inputs, labels in batches[:3]:
            train_step(inputs, labels)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            for inputs, labels in batches[3:]:
                train_step(inputs, labels)
            wall = time.perf_counter() - start
        tokens = sum(int((labels != -100).sum()) for _, labels in batches[3:])
        report(
            f"training step, batch {args.batch_size}, {tokens / args.steps:.0f} target tokens", prof, args.steps, wall
        )

    if args.what in ("decode", "both"):
        model.eval()
        model.generation_config.eos_token_id = None  # fixed-length outputs (see scripts/benchmark.py)
        kwargs = dict(num_beams=args.num_beams, max_new_tokens=args.decode_length)
        sources = [batch(args.decode_batch_size, config.pad_token_id) for _ in range(args.steps + 1)]
        with torch.inference_mode():
            model.generate(**sources[0], **kwargs)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                start = time.perf_counter()
                for inputs in sources[1:]:
                    model.generate(**inputs, **kwargs)
                wall = time.perf_counter() - start
        report(
            f"generate(), {args.decode_batch_size} sentences, beam {args.num_beams}, {args.decode_length} tokens",
            prof,
            args.steps,
            wall,
        )


if __name__ == "__main__":
    main()
