"""Speed and memory of one RNNSeq2Seq configuration on generated data.

Prints training throughput (target tokens/s: forward + backward + Adam step), greedy and beam-search decoding
throughput through `generate()` (sentences/s), the peak resident memory and the threads used. With several
`--variants` (plain attention, + copy, + coverage, ...), each is measured on the same batches and also reported as a
ratio to the first. The defaults are the
configuration of the peer benchmark in ../shared/bench/peers (OpenNMT-py / JoeyNMT): a 1-layer bidirectional LSTM
encoder 2×128, LSTM decoder 256, embeddings 128, input feeding, dropout 0.3, Adam 1e-3, batches of 64 sentences.

    python scripts/benchmark.py                          # the peer configuration, 1 thread
    python scripts/benchmark.py --attention_type additive --threads 2
    python scripts/benchmark.py --input_feeding false    # the decoder RNN runs over all steps in one call
    python scripts/benchmark.py --variants plain copy copy+coverage --repeats 3   # what copy and coverage cost
    python scripts/benchmark.py --device cuda --dtype bfloat16   # on a GPU, bf16 autocast (cuDNN LSTM kernels)

Decoding is timed at a fixed output length: EOS is switched off in the generation config, so every hypothesis runs to
`--decode_length` tokens and an untrained model does the work a trained one does on sentences of that length.
(`min_new_tokens` would do the same but adds a logits processor that costs as much as the model itself here.)
"""

import argparse
import json
import os
import platform
import resource
import time


def str2bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {value!r}")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vocab_size", type=int, default=8000)
    p.add_argument("--embedding_size", type=int, default=128)
    p.add_argument("--hidden_size", type=int, default=256)
    p.add_argument("--encoder_layers", type=int, default=1)
    p.add_argument("--decoder_layers", type=int, default=1)
    p.add_argument("--cell_type", default="lstm", choices=["lstm", "gru"])
    p.add_argument("--attention_type", default="general", choices=["none", "dot", "general", "additive"])
    p.add_argument("--input_feeding", type=str2bool, default=True)
    p.add_argument("--bidirectional_encoder", type=str2bool, default=True)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--batch_size", type=int, default=64, help="training batch, in sentences")
    p.add_argument("--train_steps", type=int, default=30, help="timed training steps (after 3 warm-up steps)")
    p.add_argument("--source_length", type=int, nargs=2, default=[10, 30], help="min and max source length")
    p.add_argument("--target_length", type=int, nargs=2, default=[10, 30], help="min and max target length")
    p.add_argument("--decode_sentences", type=int, default=120)
    p.add_argument("--decode_batch_size", type=int, default=30)
    p.add_argument("--decode_length", type=int, default=25, help="generated tokens per sentence")
    p.add_argument("--num_beams", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--variants",
        nargs="+",
        default=["plain"],
        choices=["plain", "copy", "coverage", "copy+coverage", "copyext+coverage"],
        help="configurations to measure on the same batches; figures of the others are also given as ratios to the "
        "first (copyext+coverage: extended copy vocabulary of 50 ids, every 10th source token an OOV)",
    )
    p.add_argument(
        "--repeats", type=int, default=1, help="measure every variant this often, alternating; keep the best"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument(
        "--dtype", default="float32", choices=["float32", "bfloat16"], help="bfloat16: autocast, as Trainer's --bf16"
    )
    p.add_argument("--json", help="also write the results to this JSON file")
    return p.parse_args()


VARIANTS = {
    "plain": {},
    "copy": dict(use_copy=True),
    "coverage": dict(use_coverage=True),
    "copy+coverage": dict(use_copy=True, use_coverage=True),
    "copyext+coverage": dict(use_copy=True, copy_extended_vocab=True, max_source_oovs=50, use_coverage=True),
}


def main():
    args = parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    sync = (
        torch.cuda.synchronize if on_gpu else (lambda: None)
    )  # GPU work is asynchronous: wait before reading a clock

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bfloat16")

    from hf_rnn_seq2seq import RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration

    def make_config(variant):
        return RNNSeq2SeqConfig(
            vocab_size=args.vocab_size,
            embedding_size=args.embedding_size,
            hidden_size=args.hidden_size,
            encoder_layers=args.encoder_layers,
            decoder_layers=args.decoder_layers,
            cell_type=args.cell_type,
            attention_type=args.attention_type,
            input_feeding=args.input_feeding,
            bidirectional_encoder=args.bidirectional_encoder,
            dropout=args.dropout,
            bridge="dense",
            **VARIANTS[variant],
        )

    pad_id = make_config("plain").pad_token_id
    g = torch.Generator().manual_seed(args.seed)

    def random_batch(batch_size, lengths, pad_value):
        sizes = torch.randint(lengths[0], lengths[1] + 1, (batch_size,), generator=g)
        ids = torch.randint(4, args.vocab_size, (batch_size, int(sizes.max())), generator=g)
        mask = torch.arange(ids.shape[1])[None, :] < sizes[:, None]
        return ids.masked_fill(~mask, pad_value), mask.long()

    def with_oovs(input_ids, attention_mask, config):
        """For an extended copy vocabulary: every 10th source token is an OOV with its own extended id."""
        if not config.copy_extended_vocab:
            return {"input_ids": input_ids, "attention_mask": attention_mask}
        oov = (torch.arange(input_ids.shape[1]) % 10 == 0)[None, :] & attention_mask.bool()
        slots = (oov.cumsum(dim=1) - 1).clamp(max=config.max_source_oovs - 1)
        extended = torch.where(oov, config.vocab_size + slots, input_ids)
        return {
            "input_ids": input_ids.masked_fill(oov, config.unk_token_id),
            "attention_mask": attention_mask,
            "extended_input_ids": extended,
        }

    # The same batches for every variant.
    train_batches = []
    for _ in range(args.train_steps + 3):
        input_ids, attention_mask = random_batch(args.batch_size, args.source_length, pad_id)
        labels, _ = random_batch(args.batch_size, args.target_length, -100)
        train_batches.append((input_ids, attention_mask, labels))
    sources = [
        random_batch(args.decode_batch_size, args.source_length, pad_id)
        for _ in range(args.decode_sentences // args.decode_batch_size)
    ]

    def measure(variant):
        config = make_config(variant)
        torch.manual_seed(args.seed)
        model = RNNSeq2SeqForConditionalGeneration(config).to(device)
        # Training: forward + backward + optimiser step on batches of args.batch_size sentences.
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        target_tokens, elapsed = 0, 0.0
        for step, (input_ids, attention_mask, labels) in enumerate(train_batches):
            inputs = {k: v.to(device) for k, v in with_oovs(input_ids, attention_mask, config).items()}
            labels = labels.to(device)
            sync()
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                loss = model(**inputs, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            sync()
            if step >= 3:  # warm-up steps are not timed
                elapsed += time.perf_counter() - start
                target_tokens += int((labels != -100).sum())
        figures = {"train_target_tokens_per_s": target_tokens / elapsed}

        # Decoding through generate(), fixed output length.
        model.eval()
        model.generation_config.eos_token_id = None  # fixed-length outputs, see the module docstring
        decode_inputs = [
            {k: v.to(device) for k, v in with_oovs(input_ids, attention_mask, config).items()}
            for input_ids, attention_mask in sources
        ]
        for name, beams in (("greedy", 1), (f"beam{args.num_beams}", args.num_beams)):
            kwargs = dict(num_beams=beams, max_new_tokens=args.decode_length)
            with torch.inference_mode(), autocast():
                model.generate(**decode_inputs[0], **kwargs)  # warm-up
                elapsed = 0.0
                # each batch twice, the faster counts: a shared machine's stalls are short
                for inputs in decode_inputs:
                    times = []
                    for _ in range(2):
                        sync()
                        start = time.perf_counter()
                        model.generate(**inputs, **kwargs)
                        sync()
                        times.append(time.perf_counter() - start)
                    elapsed += min(times)
            figures[f"{name}_sentences_per_s"] = len(sources) * args.decode_batch_size / elapsed
        figures["parameters"] = sum(p.numel() for p in model.parameters())
        return figures

    # Variants alternate over the repeats (so that a slow spell of a shared machine hits all of them); best of each.
    best = {variant: {} for variant in args.variants}
    for _ in range(args.repeats):
        for variant in args.variants:
            for key, value in measure(variant).items():
                best[variant][key] = max(best[variant].get(key, 0), value)

    baseline = best[args.variants[0]]
    rate_keys = ("train_target_tokens_per_s", "greedy_sentences_per_s", f"beam{args.num_beams}_sentences_per_s")
    variants = {}
    for variant, figures in best.items():
        variants[variant] = {key: round(figures[key], 1) for key in rate_keys} | {"parameters": figures["parameters"]}
        if variant != args.variants[0]:
            for key in rate_keys:
                variants[variant][f"{key.split('_')[0]}_vs_{args.variants[0]}"] = round(
                    figures[key] / baseline[key], 3
                )
    first = variants[args.variants[0]]
    report = {
        "config": {
            k: getattr(make_config("plain"), k)
            for k in (
                "cell_type",
                "attention_type",
                "input_feeding",
                "embedding_size",
                "hidden_size",
                "encoder_layers",
                "decoder_layers",
                "bidirectional_encoder",
                "vocab_size",
            )
        },
        "parameters": first["parameters"],
        "train_target_tokens_per_s": round(first["train_target_tokens_per_s"]),
        "train_batch_size": args.batch_size,
        "greedy_sentences_per_s": first["greedy_sentences_per_s"],
        f"beam{args.num_beams}_sentences_per_s": first[f"beam{args.num_beams}_sentences_per_s"],
        "decode_batch_size": args.decode_batch_size,
        "decode_length": args.decode_length,
        "repeats": args.repeats,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(device) if on_gpu else "cpu",
        "dtype": args.dtype,
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.platform()}",
    }
    if on_gpu:
        report["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    if len(args.variants) > 1:
        report["variants"] = variants
    width = max(len(k) for k in report)
    for key, value in report.items():
        if key != "variants":
            print(f"{key:<{width}}  {value}")
    if len(args.variants) > 1:
        columns = [*rate_keys, *(k for k in variants[args.variants[-1]] if "_vs_" in k)]
        print()
        print(f"{'variant':<18}" + "".join(f"{c:>28}" for c in columns))
        for variant, figures in variants.items():
            print(f"{variant:<18}" + "".join(f"{figures.get(c, 1.0):>28}" for c in columns))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
