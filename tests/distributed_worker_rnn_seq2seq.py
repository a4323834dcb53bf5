"""One short Seq2SeqTrainer job, run by tests/test_distributed_rnn_seq2seq.py under `torchrun --nproc_per_node N`
(or plain `python`): the same model, data and seed whatever the process layout. Rank 0 writes a JSON report.

    python tests/distributed_worker_rnn_seq2seq.py REPORT.json --batch 32 [--accumulation 2] [--max_steps 1]
        [--predict 13] [--stop_after 3 | --resume_from CHECKPOINT] [--dropout 0.1] [--bf16]
"""

import argparse
import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch
from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback

from hf_rnn_seq2seq import RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration
from hf_rnn_seq2seq.tasks_rnn_seq2seq import make_task
from hf_rnn_seq2seq.tokenization_rnn_seq2seq import train_tokenizer
from hf_rnn_seq2seq.trainer_rnn_seq2seq import RNNSeq2SeqTrainer


class StopAfter(TrainerCallback):
    """Ends training after `step` optimizer steps, as a killed job would (the checkpoint at that step is saved)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("report")
    parser.add_argument("--output_dir", default=None)
    parser.add_argument("--batch", type=int, default=32, help="per-process batch")
    parser.add_argument("--accumulation", type=int, default=1)
    parser.add_argument("--train_size", type=int, default=32)
    parser.add_argument("--max_steps", type=int, default=1)
    parser.add_argument("--save_steps", type=int, default=0)
    parser.add_argument("--stop_after", type=int, default=0)
    parser.add_argument("--resume_from", default=None)
    parser.add_argument("--predict", type=int, default=0, help="also predict this many test examples (beam 3)")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--stock_trainer", action="store_true", help="transformers' Seq2SeqTrainer")
    args = parser.parse_args()

    data = make_task("numbers", seed=5, sizes=(args.train_size, 1, max(args.predict, 1)))
    pairs = data["train"]["translation"]
    tokenizer = train_tokenizer([text for pair in pairs for text in pair.values()], kind="word")

    def encode(batch):
        features = tokenizer([pair["en"] for pair in batch["translation"]])
        features["labels"] = tokenizer([pair["zh"] for pair in batch["translation"]])["input_ids"]
        return features

    train = data["train"].map(encode, batched=True, remove_columns=["translation"])
    test = data["test"].map(encode, batched=True, remove_columns=["translation"])
    config = RNNSeq2SeqConfig(
        vocab_size=len(tokenizer), embedding_size=16, hidden_size=32, dropout=args.dropout,
        use_copy=True, use_coverage=True, label_smoothing=0.1,
    )  # fmt: skip
    torch.manual_seed(0)
    model = RNNSeq2SeqForConditionalGeneration(config)
    training_args = Seq2SeqTrainingArguments(
        output_dir=args.output_dir or os.path.dirname(os.path.abspath(args.report)),
        per_device_train_batch_size=args.batch, per_device_eval_batch_size=4,
        gradient_accumulation_steps=args.accumulation, max_steps=args.max_steps, learning_rate=1e-2,
        logging_steps=1, max_grad_norm=1e9,  # no clipping: the reported norm is the raw gradient's
        save_strategy="steps" if args.save_steps else "no", save_steps=args.save_steps or 500,
        ddp_find_unused_parameters=False,  # every parameter is used by every configuration
        predict_with_generate=True, generation_num_beams=3, generation_max_length=12,
        bf16=args.bf16, use_cpu=True, report_to="none", disable_tqdm=True, seed=0, data_seed=0,
    )  # fmt: skip
    trainer_class = Seq2SeqTrainer if args.stock_trainer else RNNSeq2SeqTrainer
    trainer = trainer_class(
        model=model, args=training_args, train_dataset=train, processing_class=tokenizer,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model),
        callbacks=[StopAfter(args.stop_after)] if args.stop_after else None,
    )  # fmt: skip
    trainer.train(resume_from_checkpoint=args.resume_from)
    report = {
        "world_size": training_args.world_size,
        "steps": [
            {"step": row["step"], "loss": row["loss"], "grad_norm": float(row["grad_norm"])}
            for row in trainer.state.log_history if "loss" in row
        ],
    }  # fmt: skip
    if args.predict:
        predictions = trainer.predict(test).predictions
        report["predictions"] = tokenizer.batch_decode(
            [[i for i in row if i >= 0] for row in predictions.tolist()], skip_special_tokens=True
        )
    if trainer.is_world_process_zero():
        with open(args.report, "w") as out:
            json.dump(report, out)


if __name__ == "__main__":
    main()
