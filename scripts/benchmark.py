"""Speed and memory of one RNNSeq2Seq configuration on generated data.

Prints training throughput (target tokens/s: forward + backward + Adam step), greedy and beam-search decoding
throughput through `generate()` (sentences/s), the peak resident memory and the threads used. The defaults are the
configuration of the peer benchmark in ../shared/bench/peers (OpenNMT-py / JoeyNMT): a 1-layer bidirectional LSTM
encoder 2×128, LSTM decoder 256, embeddings 128, input feeding, dropout 0.3, Adam 1e-3, batches of 64 sentences.

    python scripts/benchmark.py                          # the peer configuration, 1 thread
    python scripts/benchmark.py --attention_type additive --threads 2
    python scripts/benchmark.py --input_feeding false    # the decoder RNN runs over all steps in one call

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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the results to this JSON file")
    return p.parse_args()


def main():
    args = parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    from hf_rnn_seq2seq import RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration

    config = RNNSeq2SeqConfig(
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
    )
    torch.manual_seed(args.seed)
    model = RNNSeq2SeqForConditionalGeneration(config)
    g = torch.Generator().manual_seed(args.seed)

    def random_batch(batch_size, lengths, pad_value):
        sizes = torch.randint(lengths[0], lengths[1] + 1, (batch_size,), generator=g)
        ids = torch.randint(4, args.vocab_size, (batch_size, int(sizes.max())), generator=g)
        mask = torch.arange(ids.shape[1])[None, :] < sizes[:, None]
        return ids.masked_fill(~mask, pad_value), mask.long()

    # Training: forward + backward + optimiser step on batches of args.batch_size sentences.
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = []
    for _ in range(args.train_steps + 3):
        input_ids, attention_mask = random_batch(args.batch_size, args.source_length, config.pad_token_id)
        labels, _ = random_batch(args.batch_size, args.target_length, -100)
        batches.append((input_ids, attention_mask, labels))
    target_tokens, elapsed = 0, 0.0
    for step, (input_ids, attention_mask, labels) in enumerate(batches):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        if step >= 3:  # warm-up steps are not timed
            elapsed += time.perf_counter() - start
            target_tokens += int((labels != -100).sum())
    train_tokens_per_s = target_tokens / elapsed
    train_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    # Decoding through generate(), fixed output length.
    model.eval()
    model.generation_config.eos_token_id = None  # fixed-length outputs, see the module docstring
    sources = [
        random_batch(args.decode_batch_size, args.source_length, config.pad_token_id)
        for _ in range(args.decode_sentences // args.decode_batch_size)
    ]
    results = {}
    for name, beams in (("greedy", 1), (f"beam{args.num_beams}", args.num_beams)):
        kwargs = dict(num_beams=beams, max_new_tokens=args.decode_length)
        with torch.inference_mode():
            model.generate(input_ids=sources[0][0], attention_mask=sources[0][1], **kwargs)  # warm-up
            start = time.perf_counter()
            for input_ids, attention_mask in sources:
                model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
            results[name] = len(sources) * args.decode_batch_size / (time.perf_counter() - start)

    report = {
        "config": {
            k: getattr(config, k)
            for k in (
                "cell_type",
                "attention_type",
                "input_feeding",
                "embedding_size",
                "hidden_size",
                "encoder_layers",
                "decoder_layers",
                "bidirectional_encoder",
            )
        },
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_target_tokens_per_s": round(train_tokens_per_s),
        "train_batch_size": args.batch_size,
        "greedy_sentences_per_s": round(results["greedy"], 1),
        f"beam{args.num_beams}_sentences_per_s": round(results[f"beam{args.num_beams}"], 1),
        "decode_batch_size": args.decode_batch_size,
        "decode_length": args.decode_length,
        "peak_rss_mb_after_training": round(train_peak_mb),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.platform()}",
    }
    width = max(len(k) for k in report)
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
