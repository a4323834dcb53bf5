"""Translate (or summarise, normalise, ...) with a saved model, and look at what it attends to.

    python scripts/translate.py runs/numbers "one two" "seven zero three"
    echo "four four two" | python scripts/translate.py runs/numbers
    python scripts/translate.py runs/numbers --input_file sentences.txt --output_file out.jsonl --num_beams 5 \\
        --num_return_sequences 3
    python scripts/translate.py runs/names "ask Zorbu about tea" --plot_attention attention.png

Sentences come from the arguments, or from `--input_file` (one per line), or from standard input. They are translated
in batches with every `generate()` option (beam search, n-best, length and coverage penalties, sampling). Output:
one line per sentence on standard output (n-best separated by " ||| "), or JSON Lines with `--json` /
`--output_file out.jsonl`. `--plot_attention out.png` draws the attention (source × output tokens, and the copy
probability p_gen when the model copies) of the sentences, one grid in one file.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

import hf_rnn_seq2seq  # noqa: F401  (registers the model with the Auto classes)
from hf_rnn_seq2seq.pipeline_rnn_seq2seq import RNNSeq2SeqPipeline


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("decoding (passed to generate())")
    group.add_argument("--num_beams", type=int, default=None, help="beam size (default: the model's, often 1)")
    group.add_argument("--num_return_sequences", type=int, default=1, help="n-best: this many outputs per input")
    group.add_argument("--max_new_tokens", type=int, default=None, help="longest output (default: the model's)")
    group.add_argument("--length_penalty", type=float, default=None, help="beam score = log P / length**this")
    group.add_argument("--coverage_penalty", type=float, default=None, help="GNMT coverage penalty β (beam search)")
    group.add_argument("--no_repeat_ngram_size", type=int, default=None, help="never repeat an n-gram of this size")
    group.add_argument("--do_sample", action="store_true", help="sample instead of searching")
    group.add_argument("--temperature", type=float, default=None)
    group.add_argument("--top_k", type=int, default=None)
    group.add_argument("--top_p", type=float, default=None)
    group.add_argument("--seed", type=int, default=0, help="random seed (sampling)")
    group.add_argument("--batch_size", type=int, default=32, help="sentences per generate() call")
    group.add_argument(
        "--max_source_length", type=int, default=None, help="truncate sources to this many tokens (as in training)"
    )


def generation_kwargs(args: argparse.Namespace) -> dict:
    names = ("num_beams", "num_return_sequences", "max_new_tokens", "length_penalty", "coverage_penalty",
             "no_repeat_ngram_size", "temperature", "top_k", "top_p", "max_source_length")  # fmt: skip
    kwargs = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.do_sample:
        kwargs["do_sample"] = True
    if kwargs.get("num_return_sequences", 1) > 1 and not args.do_sample:
        kwargs["num_beams"] = max(kwargs.get("num_beams") or 1, kwargs["num_return_sequences"])
    return kwargs


def load(model_path: str):
    if not os.path.isdir(model_path):
        raise SystemExit(f"error: {model_path} is not a folder with a saved model (config.json, model.safetensors).")
    model = AutoModelForSeq2SeqLM.from_pretrained(model_path).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    return model, tokenizer


def translate(model, tokenizer, sentences: list[str], batch_size: int = 32, **generate_kwargs) -> list[list[str]]:
    """The outputs (n-best lists, best first) for `sentences`, through `RNNSeq2SeqPipeline` (which also decodes the
    copied out-of-vocabulary words of extended-vocabulary copy models)."""
    if not sentences:
        return []
    pipe = RNNSeq2SeqPipeline(model=model, tokenizer=tokenizer, batch_size=batch_size)
    with torch.inference_mode():
        results = pipe(sentences, **generate_kwargs)
    return [[r["generated_text"].strip() for r in (res if isinstance(res, list) else [res])] for res in results]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a folder written by scripts/train.py or save_pretrained (model + tokenizer)")
    parser.add_argument("sentences", nargs="*", help="sentences to translate (default: --input_file or stdin)")
    parser.add_argument("--input_file", help="one sentence per line")
    parser.add_argument("--output_file", help="write JSON Lines here")
    parser.add_argument("--json", action="store_true", help="print JSON Lines instead of plain text")
    parser.add_argument("--plot_attention", metavar="PNG", help="draw the attention of the sentences into this file")
    add_generation_arguments(parser)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)

    if args.sentences:
        sentences = args.sentences
    elif args.input_file:
        with open(args.input_file, encoding="utf-8") as f:
            sentences = [line.rstrip("\n") for line in f if line.strip()]
    else:
        sentences = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not sentences:
        raise SystemExit("error: no sentences to translate (give them as arguments, --input_file or on stdin).")

    model, tokenizer = load(args.model)
    kwargs = generation_kwargs(args)
    outputs = translate(model, tokenizer, sentences, batch_size=args.batch_size, **kwargs)
    records = [{"source": s, "translations": o} for s, o in zip(sentences, outputs, strict=True)]
    if args.output_file:
        with open(args.output_file, "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
    for record in records:
        print(json.dumps(record, ensure_ascii=False) if args.json else " ||| ".join(record["translations"]))

    if args.plot_attention:
        from hf_rnn_seq2seq.plotting_rnn_seq2seq import attention_from_generate, plot_attention_grid

        single = {k: v for k, v in kwargs.items() if k not in ("num_return_sequences", "max_source_length")}
        items = [attention_from_generate(model, tokenizer, sentence, **single) for sentence in sentences[:16]]
        plot_attention_grid(items, args.plot_attention, columns=min(2, len(items)))
        print(f"Attention plot written to {args.plot_attention}", file=sys.stderr)


if __name__ == "__main__":
    main()
