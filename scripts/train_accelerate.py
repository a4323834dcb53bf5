"""A plain Accelerate training loop for an RNN encoder-decoder, for users who do not want the Trainer.

    python scripts/train_accelerate.py                                            # one process (CPU or one GPU)
    accelerate launch --multi_gpu --num_processes 2 scripts/train_accelerate.py   # 2 processes (GPUs, or CPUs/gloo)
    accelerate launch --mixed_precision bf16 scripts/train_accelerate.py          # bf16 autocast

The built-in numbers task (`one two → 一 二`), a word-level tokenizer, AdamW with linear warmup and decay, then beam-search BLEU on the test split
gathered from every process (`gather_for_metrics`: each example once).
"""

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from transformers import DataCollatorForSeq2Seq, get_linear_schedule_with_warmup

from hf_rnn_seq2seq import RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration
from hf_rnn_seq2seq.metrics_rnn_seq2seq import compute_generation_metrics
from hf_rnn_seq2seq.tasks_rnn_seq2seq import make_task
from hf_rnn_seq2seq.tokenization_rnn_seq2seq import train_tokenizer


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch_size", type=int, default=64, help="per process")
    parser.add_argument("--learning_rate", type=float, default=3e-3)
    parser.add_argument("--train_size", type=int, default=6000)
    parser.add_argument("--test_size", type=int, default=200)
    parser.add_argument("--output_dir", default="runs/numbers-accelerate")
    args = parser.parse_args(argv)

    accelerator = Accelerator()
    set_seed(0)
    data = make_task("numbers", sizes=(args.train_size, 1, args.test_size))
    tokenizer = train_tokenizer([t for pair in data["train"]["translation"] for t in pair.values()], kind="word")

    def encode(batch):
        features = tokenizer([pair["en"] for pair in batch["translation"]])
        features["labels"] = tokenizer(text_target=[pair["zh"] for pair in batch["translation"]])["input_ids"]
        return features

    train = data["train"].map(encode, batched=True, remove_columns=["translation"])
    test = data["test"].map(encode, batched=True, remove_columns=["translation"])
    config = RNNSeq2SeqConfig(
        vocab_size=len(tokenizer), embedding_size=64, hidden_size=128, encoder_layers=1, decoder_layers=1, dropout=0.1
    )
    model = RNNSeq2SeqForConditionalGeneration(config)
    collator = DataCollatorForSeq2Seq(tokenizer, model=model)
    train_loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, collate_fn=collator)
    test_loader = DataLoader(test, batch_size=100, collate_fn=collator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.0)
    steps = args.epochs * len(train_loader) // accelerator.num_processes
    scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=30, num_training_steps=steps)
    model, optimizer, train_loader, test_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, test_loader, scheduler
    )

    for epoch in range(args.epochs):
        model.train()
        for batch in train_loader:
            loss = model(**batch).loss  # mean over this process's target tokens; DDP averages the gradients
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        accelerator.print(f"epoch {epoch + 1}: last batch loss {loss.item():.3f}")

    model.eval()
    predictions, references = [], []
    for batch in test_loader:
        with torch.no_grad():
            generated = accelerator.unwrap_model(model).generate(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], num_beams=5, max_new_tokens=20
            )
        generated = accelerator.pad_across_processes(generated, dim=1, pad_index=tokenizer.pad_token_id)
        labels = accelerator.pad_across_processes(batch["labels"], dim=1, pad_index=-100)
        generated, labels = accelerator.gather_for_metrics((generated, labels))
        labels = torch.where(labels < 0, tokenizer.pad_token_id, labels)
        predictions += tokenizer.batch_decode(generated, skip_special_tokens=True)
        references += tokenizer.batch_decode(labels, skip_special_tokens=True)
    metrics = compute_generation_metrics(predictions, references, metrics=("sacrebleu", "exact_match"))
    accelerator.print(f"test ({len(predictions)} examples): {metrics}")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(args.output_dir)
        tokenizer.save_pretrained(args.output_dir)
    return metrics, len(predictions)


if __name__ == "__main__":
    main()
