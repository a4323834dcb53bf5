"""The lecture's exercise, end to end in about a minute on a CPU: translate English number words into Chinese
numerals (`one two → 一 二`) with an LSTM encoder-decoder with attention.

    python scripts/demo.py [--output_dir runs/demo] [--epochs 6]

It generates the data, builds a word-level tokenizer with `tokenizers`, trains with `Seq2SeqTrainer`, prints greedy
and beam-search translations of held-out inputs, saves the model and tokenizer, and reloads them through
`AutoModelForSeq2SeqLM` / `AutoTokenizer` to show the reloaded model translates identically.
"""

import argparse
import os
import random
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # LSTMs on few cores: oversubscribed threads are ~30x slower

import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    PreTrainedTokenizerFast,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
)

import hf_rnn_seq2seq  # noqa: F401  (registers the model with the Auto classes)
from hf_rnn_seq2seq import RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration

ENGLISH = "zero one two three four five six seven eight nine".split()
CHINESE = list("零一二三四五六七八九")
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]


def make_pairs(n: int, seed: int, max_digits: int = 8) -> list[dict]:
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        digits = [rng.randrange(10) for _ in range(rng.randint(1, max_digits))]
        pairs.append({"source": " ".join(ENGLISH[d] for d in digits), "target": " ".join(CHINESE[d] for d in digits)})
    return pairs


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over both languages (one shared vocabulary); every sequence ends with </s>."""
    vocab = {token: i for i, token in enumerate(SPECIALS + ENGLISH + CHINESE)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 2)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="runs/demo")
    parser.add_argument("--epochs", type=float, default=6)
    parser.add_argument("--train_size", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    tokenizer = build_tokenizer()

    def tokenize(batch):
        return tokenizer(batch["source"], text_target=batch["target"])

    train = Dataset.from_list(make_pairs(args.train_size, seed=args.seed)).map(tokenize, batched=True)
    test_pairs = make_pairs(200, seed=args.seed + 1)

    config = RNNSeq2SeqConfig(
        vocab_size=len(tokenizer),
        embedding_size=64,
        hidden_size=128,
        encoder_layers=1,
        decoder_layers=1,
        attention_type="general",
        dropout=0.1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        unk_token_id=tokenizer.unk_token_id,
        decoder_start_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(args.seed)
    model = RNNSeq2SeqForConditionalGeneration(config)
    print(f"Model: {sum(p.numel() for p in model.parameters()):,} parameters; vocabulary {len(tokenizer)} tokens")

    training_args = Seq2SeqTrainingArguments(
        output_dir=args.output_dir,
        num_train_epochs=args.epochs,
        per_device_train_batch_size=64,
        learning_rate=3e-3,
        warmup_steps=30,
        logging_steps=50,
        save_strategy="no",
        report_to=[],
        seed=args.seed,
        use_cpu=True,
    )
    trainer = Seq2SeqTrainer(
        model=model,
        args=training_args,
        train_dataset=train.remove_columns(["source", "target"]),
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model),
        processing_class=tokenizer,
    )
    start = time.perf_counter()
    trainer.train()
    print(f"Trained in {time.perf_counter() - start:.0f} s")

    model.eval()
    sources = [p["source"] for p in test_pairs]
    inputs = tokenizer(sources, return_tensors="pt", padding=True)
    greedy = tokenizer.batch_decode(model.generate(**inputs, max_new_tokens=12), skip_special_tokens=True)
    beam = tokenizer.batch_decode(model.generate(**inputs, max_new_tokens=12, num_beams=5), skip_special_tokens=True)
    references = [p["target"] for p in test_pairs]
    for source, hypothesis, reference in list(zip(sources, beam, references, strict=True))[:6]:
        print(f"  {source:<45} → {hypothesis:<16} (reference {reference})")
    for name, outputs in (("greedy", greedy), ("beam 5", beam)):
        accuracy = sum(o == r for o, r in zip(outputs, references, strict=True)) / len(references)
        print(f"Exact match on {len(references)} held-out inputs, {name}: {accuracy:.1%}")

    trainer.save_model(args.output_dir)  # model, config, generation config and tokenizer
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(args.output_dir).eval()
    reloaded_tokenizer = AutoTokenizer.from_pretrained(args.output_dir)
    again = reloaded_tokenizer.batch_decode(
        reloaded.generate(
            **reloaded_tokenizer(sources, return_tensors="pt", padding=True), max_new_tokens=12, num_beams=5
        ),
        skip_special_tokens=True,
    )
    print(f"Saved to {args.output_dir}; reloaded with AutoModelForSeq2SeqLM: identical translations = {again == beam}")
    example = "one two"
    output = reloaded.generate(**reloaded_tokenizer([example], return_tensors="pt"), max_new_tokens=12)
    print(f"{example} → {reloaded_tokenizer.decode(output[0], skip_special_tokens=True)}")


if __name__ == "__main__":
    main()
