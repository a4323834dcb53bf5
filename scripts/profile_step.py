"""Where the time of one training step and one decoding step goes: `torch.profiler` tables on generated batches, and
the matrix products' share timed where they run.

    python scripts/profile_step.py                                   # peer configuration, general attention
    python scripts/profile_step.py --attention_type additive --use_copy --use_coverage --copy_extended_vocab
    python scripts/profile_step.py --what decode --num_beams 5 --rows 25

The batches have the shape of the peer benchmark's copy/reverse corpus (../shared/bench/peers: 64 sentences of 3-25
tokens, a 560-token vocabulary). Training: forward + backward + fused AdamW step; decoding: one `generate()` call on 30
sentences with `--num_beams`, at a fixed output length. The table lists the operators by their own ("self") CPU time,
averaged over `--steps` profiled steps after warm-up; the first line gives the wall time per step.

Below each table, the same steps run again without the profiler (its per-operator cost inflates the small operators
more than the products): the wall time per step, then again with every matrix product timed on its own as it runs
(its real operands, layouts and caches; torch's `nn.LSTM`, the encoder's in inference, counts as one product): the
products' share of the step, their FLOP rate, the number of other operators, and the products by shape. That share
is the floor no rearrangement of the other operators can go below without fewer or faster products.
"""

import argparse
import os
import time
from collections import defaultdict


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
    p.add_argument("--shapes", type=int, default=8, help="products listed by shape, slowest first")
    return p.parse_args()


def product_timer():
    """A dispatch mode that times every matrix product where it runs and counts the other operators."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    aten = torch.ops.aten
    # each product and the position of its first matrix operand; under `torch.inference_mode` `matmul` and `linear`
    # (and `nn.LSTM`) arrive whole, elsewhere as the products they are made of
    first_matrix = {aten.mm.default: 0, aten.bmm.default: 0, aten.mv.default: 0}
    first_matrix |= {aten.matmul.default: 0, aten.linear.default: 0}
    first_matrix |= {aten.addmm.default: 1, aten.addmm_.default: 1, aten.addmv.default: 1}
    first_matrix |= {aten.baddbmm.default: 1, aten.baddbmm_.default: 1}

    class ProductTimer(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.by_shape = defaultdict(lambda: [0.0, 0, 0])  # (op, shapes) -> seconds, calls, FLOPs
            self.other_ops = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func not in first_matrix and func is not aten.lstm.data:
                self.other_ops += 1
                return func(*args, **kwargs)
            start = time.perf_counter()
            out = func(*args, **kwargs)
            seconds = time.perf_counter() - start
            if func is aten.lstm.data:  # the encoder's LSTM, timed as a whole (its element-wise work included)
                key, flops = ("nn.LSTM (encoder, whole)", ()), 0
            else:  # 2·M·N·K for each product (batched: times the batch)
                key = (func.__name__.split(".")[0], tuple(tuple(a.shape) for a in args if isinstance(a, torch.Tensor)))
                flops = 2 * out.numel() * args[first_matrix[func]].shape[-1]
            entry = self.by_shape[key]
            entry[0], entry[1], entry[2] = entry[0] + seconds, entry[1] + 1, entry[2] + flops
            return out

    return ProductTimer()


def report_products(run, steps, top):
    """Runs `run()` (`steps` steps) three times plain and once under `product_timer`; prints the products' share."""
    wall = min(_timed(run) for _ in range(3)) / steps
    timer = product_timer()
    with timer:
        run()
    by_shape = timer.by_shape
    seconds = sum(v[0] for v in by_shape.values()) / steps
    calls = sum(v[1] for v in by_shape.values()) / steps
    counted = [v for v in by_shape.values() if v[2]]  # the FLOP rate over the products whose FLOPs are counted
    rate = sum(v[2] for v in counted) / sum(v[0] for v in counted) / 1e9 if counted else 0.0
    print(
        f"\nWithout the profiler: {wall * 1000:.1f} ms per step; matrix products timed where they run: "
        f"{seconds * 1000:.1f} ms ({seconds / wall:.0%}), {calls:.0f} calls, {rate:.0f} GFLOP/s; "
        f"{timer.other_ops / steps:.0f} other operators (ATen calls) per step"
    )
    for (op, shapes), (s, n, f) in sorted(by_shape.items(), key=lambda kv: -kv[1][0])[:top]:
        rate = f"{f / s / 1e9:6.1f} GFLOP/s" if f else " " * 14
        print(f"  {s / steps * 1000:6.2f} ms {n / steps:5.1f}× {rate}  {op} {' · '.join(map(str, shapes))}")


def _timed(run):
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


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
        # the Trainer's default optimiser (fused AdamW, what `scripts/bench_peers.py` trains with), weight decay 0
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0, fused=True)
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

        def run_training():
            for inputs, labels in batches[3:]:
                train_step(inputs, labels)

        for inputs, labels in batches[:3]:
            train_step(inputs, labels)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            wall = _timed(run_training)
        tokens = sum(int((labels != -100).sum()) for _, labels in batches[3:])
        report(
            f"training step, batch {args.batch_size}, {tokens / args.steps:.0f} target tokens", prof, args.steps, wall
        )
        report_products(run_training, args.steps, args.shapes)

    if args.what in ("decode", "both"):
        model.eval()
        model.generation_config.eos_token_id = None  # fixed-length outputs (see scripts/benchmark.py)
        kwargs = dict(num_beams=args.num_beams, max_new_tokens=args.decode_length)
        sources = [batch(args.decode_batch_size, config.pad_token_id) for _ in range(args.steps + 1)]

        def run_decoding():
            for inputs in sources[1:]:
                model.generate(**inputs, **kwargs)

        with torch.inference_mode():
            model.generate(**sources[0], **kwargs)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                wall = _timed(run_decoding)
            report(
                f"generate(), {args.decode_batch_size} sentences, beam {args.num_beams}, {args.decode_length} tokens",
                prof,
                args.steps,
                wall,
            )
            report_products(run_decoding, args.steps, args.shapes)


if __name__ == "__main__":
    main()
