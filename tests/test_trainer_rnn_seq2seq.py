"""Seq2SeqTrainer: training, evaluation with generate(), and loss normalisation under gradient accumulation."""

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

from .conftest import EOS, PAD, VOCAB, tiny_config, tiny_model


class IdsOnlyTokenizer:
    """The two attributes DataCollatorForSeq2Seq needs from a tokenizer to pad ready-made ids."""

    pad_token_id = PAD
    padding_side = "right"

    def pad(self, features, padding=True, max_length=None, pad_to_multiple_of=None, return_tensors="pt"):
        width = max(len(f["input_ids"]) for f in features)
        ids = [f["input_ids"] + [PAD] * (width - len(f["input_ids"])) for f in features]
        mask = [[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"])) for f in features]
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}


def reversal_dataset(n, seed=0):
    """Toy translation: the target is the source reversed, then EOS (variable lengths on both sides)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        src = rng.integers(4, VOCAB, size=int(rng.integers(2, 8))).tolist()
        rows.append({"input_ids": src, "labels": [*src[::-1], EOS]})
    return Dataset.from_list(rows)


def make_trainer(tmp_path, model, train, eval_=None, **args):
    defaults = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=16,
        per_device_eval_batch_size=16,
        learning_rate=3e-2,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        seed=0,
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    defaults.update(args)
    return Seq2SeqTrainer(
        model=model,
        args=Seq2SeqTrainingArguments(**defaults),
        train_dataset=train,
        eval_dataset=eval_,
        data_collator=DataCollatorForSeq2Seq(IdsOnlyTokenizer(), model=model, label_pad_token_id=-100),
    )


@pytest.mark.parametrize(
    "overrides", [dict(), dict(use_copy=True, use_coverage=True)], ids=["plain", "copy-coverage-shared-vocab"]
)
def test_trainer_trains_and_evaluates_with_generate(tmp_path, overrides):
    model = tiny_model(embedding_size=32, hidden_size=64, **overrides)
    train, evaluation = reversal_dataset(256), reversal_dataset(32, seed=1)

    def compute_metrics(prediction):
        predictions, labels = prediction.predictions, prediction.label_ids
        exact = []
        for pred, label in zip(predictions, labels, strict=True):
            pred = pred[1:].tolist()  # drop the decoder start token
            pred = pred[: pred.index(EOS) + 1] if EOS in pred else pred
            # Seq2SeqTrainer pads labels with -100 (collator) and then with the pad id (to the generation length).
            exact.append(pred == [t for t in label.tolist() if t not in (-100, PAD)])
        return {"exact_match": float(np.mean(exact))}

    trainer = make_trainer(
        tmp_path,
        model,
        train,
        evaluation,
        num_train_epochs=15,
        predict_with_generate=True,
        generation_max_length=10,
        generation_num_beams=2,
        logging_steps=10,
    )
    trainer.compute_metrics = compute_metrics
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert losses[-1] < 0.5 * losses[0]
    assert after["eval_loss"] < before["eval_loss"]
    assert before["eval_exact_match"] == 0 and after["eval_exact_match"] > 0.5
    predictions = trainer.predict(evaluation)
    assert predictions.predictions.shape[0] == len(evaluation)


@pytest.mark.parametrize("accumulation", [2, 4])
def test_gradient_accumulation_gives_the_loss_and_gradient_of_one_big_batch(tmp_path, accumulation):
    train = reversal_dataset(64)
    runs = {}
    for batch_size, steps in ((32, 1), (32 // accumulation, accumulation)):
        torch.manual_seed(0)
        model = tiny_model()
        trainer = make_trainer(
            tmp_path,
            model,
            train,
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=steps,
            max_steps=1,
        )
        trainer.train()
        first = next(log for log in trainer.state.log_history if "loss" in log)
        runs[steps] = first
    one_batch, accumulated = runs[1], runs[accumulation]
    # The same 32 examples, with different token counts per micro-batch: only a loss normalised by the whole
    # batch's token count (num_items_in_batch) gives the same numbers.
    assert accumulated["loss"] == pytest.approx(one_batch["loss"], rel=1e-4)
    assert accumulated["grad_norm"] == pytest.approx(one_batch["grad_norm"], rel=1e-4)


def test_trainer_label_smoothing_belongs_in_the_config():
    # The Trainer's label smoother would recompute the loss from the logits and drop the model's own terms:
    # label smoothing is a model config field, applied inside the model loss.
    assert tiny_config(label_smoothing=0.1).label_smoothing == 0.1


def test_predict_without_generation_max_length_keeps_the_models_default(tmp_path):
    from hf_rnn_seq2seq.modeling_rnn_seq2seq import DEFAULT_MAX_LENGTH

    model = tiny_model()
    evaluation = reversal_dataset(8, seed=1)
    trainer = make_trainer(
        tmp_path, model, evaluation, evaluation, predict_with_generate=True, per_device_eval_batch_size=4
    )
    predictions = trainer.predict(evaluation).predictions
    # Every batch is generated with, and padded to, the same stored limit; the Trainer does not reset it to 20.
    assert predictions.shape == (8, DEFAULT_MAX_LENGTH)
    assert model.generation_config.max_length == DEFAULT_MAX_LENGTH


def test_our_trainer_keeps_the_recurrent_state_on_for_generation(tmp_path):
    """transformers 5's Trainer sets config.use_cache = args.use_cache (False); saved, that config would make every
    model built from it generate without its state (each step re-reads the prefix). RNNSeq2SeqTrainer keeps it on."""
    from hf_rnn_seq2seq import RNNSeq2SeqTrainer

    stock = make_trainer(tmp_path, tiny_model(), reversal_dataset(8))
    assert stock.model.config.use_cache is False  # the behaviour this works around
    model = tiny_model()
    ours = RNNSeq2SeqTrainer(model=model, args=stock.args, train_dataset=reversal_dataset(8))
    assert ours.model.config.use_cache is True
    rebuilt = type(model)(model.config)
    assert rebuilt.generation_config.use_cache is True


def test_length_groups_come_in_random_order():
    """`ShuffledLengthGroupedSampler` hands out transformers' length groups (the same batches of similar lengths) in
    random order: the first group (with the longest example) first, a last, shorter group last, reproducibly."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from hf_rnn_seq2seq.trainer_rnn_seq2seq import ShuffledLengthGroupedSampler

    lengths = torch.randint(1, 60, (1003,), generator=torch.Generator().manual_seed(0)).tolist()
    size = 8

    def groups(seed, shuffled):
        sampler = LengthGroupedSampler(size, lengths=lengths, generator=torch.Generator().manual_seed(seed))
        indices = list(ShuffledLengthGroupedSampler(sampler) if shuffled else sampler)
        assert sorted(indices) == list(range(len(lengths)))
        return [indices[i : i + size] for i in range(0, len(indices), size)]

    stock, ours = groups(1, False), groups(1, True)
    assert ours == groups(1, True)  # reproducible
    assert ours[0] == stock[0] and ours[-1] == stock[-1] and len(ours[-1]) == 1003 % size
    assert sorted(map(tuple, ours)) == sorted(map(tuple, stock))  # the same batches
    assert ours != stock
    # transformers' order sweeps from long to short within each mega-batch of 50 groups; ours does not
    spans = [max(lengths[i] for i in group) for group in ours[1:50]]
    assert spans != sorted(spans, reverse=True)
    # little padding (except where transformers swapped the longest example of all into the first group)
    spreads = [max(lengths[i] for i in g) - min(lengths[i] for i in g) for g in ours[:-1]]
    assert sum(spread > 4 for spread in spreads) <= 1


@pytest.mark.parametrize("shuffle", [True, False])
def test_our_trainer_shuffles_length_groups(tmp_path, shuffle):
    """RNNSeq2SeqTrainer with `train_sampling_strategy="group_by_length"` uses `ShuffledLengthGroupedSampler` (unless
    `shuffle_length_groups=False`), and trains with it."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from hf_rnn_seq2seq import RNNSeq2SeqTrainer
    from hf_rnn_seq2seq.trainer_rnn_seq2seq import ShuffledLengthGroupedSampler

    stock = make_trainer(tmp_path, tiny_model(), reversal_dataset(64), train_sampling_strategy="group_by_length")
    trainer = RNNSeq2SeqTrainer(
        model=tiny_model(),
        args=stock.args,
        train_dataset=reversal_dataset(64),
        data_collator=stock.data_collator,
        shuffle_length_groups=shuffle,
    )
    sampler = trainer._get_train_sampler()
    assert type(sampler) is (ShuffledLengthGroupedSampler if shuffle else LengthGroupedSampler)
    widths = [batch["labels"].shape[1] for batch in trainer.get_train_dataloader()]
    assert len(widths) == 4
    trainer.train()
    assert trainer.state.global_step == 4 * trainer.args.num_train_epochs
