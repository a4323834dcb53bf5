"""On a CUDA GPU: the same numbers as on CPU, the incremental path equal to the full forward, bf16 finite, cuDNN's
fused RNN kernels in use, and Seq2SeqTrainer end to end. Skipped without a GPU (CI has none); `scripts/gpu_check.sh`
runs them where there is one (`pytest -m cuda`)."""

import pytest
import torch
from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainingArguments

from hf_rnn_seq2seq import RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration, RNNSeq2SeqTrainer
from hf_rnn_seq2seq.tasks_rnn_seq2seq import make_task
from hf_rnn_seq2seq.tokenization_rnn_seq2seq import train_tokenizer

from .conftest import make_batch, make_copy_batch, tiny_model

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
CONFIGS = {
    "general-input-feeding": dict(),
    "additive-cudnn-decoder": dict(attention_type="additive", input_feeding=False),  # decoder RNN in one cuDNN call
    "copy-coverage-2-layers": dict(use_copy=True, use_coverage=True, encoder_layers=2, decoder_layers=2),
    "copyext-coverage-gru": dict(use_copy=True, copy_extended_vocab=True, max_source_oovs=3, use_coverage=True,
                                 cell_type="gru"),
}  # fmt: skip


def _batch(overrides, device="cpu"):
    batch = make_copy_batch() if overrides.get("copy_extended_vocab") else make_batch()
    return {k: v.to(device) for k, v in batch.items()}


@pytest.mark.parametrize("overrides", CONFIGS.values(), ids=CONFIGS.keys())
def test_gpu_matches_cpu_and_steps_match_the_full_forward(overrides):
    # train(): cuDNN's RNN backward runs only in training mode (the tiny models have no dropout: same outputs)
    cpu, gpu = tiny_model(**overrides).train(), tiny_model(**overrides).cuda().train()
    expected, output = cpu(**_batch(overrides)), gpu(**_batch(overrides, "cuda"))
    torch.testing.assert_close(output.logits.cpu(), expected.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(output.loss.cpu(), expected.loss, atol=1e-4, rtol=1e-4)
    expected.loss.backward()
    output.loss.backward()
    for (name, p_cpu), p_gpu in zip(cpu.named_parameters(), gpu.parameters(), strict=True):
        torch.testing.assert_close(p_gpu.grad.cpu(), p_cpu.grad, atol=1e-4, rtol=1e-3, msg=name)

    batch = _batch(overrides, "cuda")
    decoder_input_ids = gpu.prepare_decoder_input_ids_from_labels(batch["labels"])
    encoder_outputs = gpu.get_encoder()(batch["input_ids"], batch["attention_mask"])
    extra = {"extended_input_ids": batch["extended_input_ids"]} if "extended_input_ids" in batch else {}
    cache, steps = None, []
    with torch.no_grad():
        full = gpu(**batch).logits
        for t in range(decoder_input_ids.shape[1]):
            step = gpu(encoder_outputs=encoder_outputs, attention_mask=batch["attention_mask"], cache=cache,
                       decoder_input_ids=decoder_input_ids[:, t : t + 1], use_cache=True, **extra)  # fmt: skip
            cache = step.cache
            steps.append(step.logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)

    gpu.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    greedy = gpu.generate(**inputs, max_new_tokens=6)
    torch.testing.assert_close(gpu.generate(**inputs, num_beams=1, do_sample=False, max_new_tokens=6), greedy)
    assert gpu.generate(**inputs, num_beams=4, num_return_sequences=2, max_new_tokens=6).shape[0] == 6


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("overrides", CONFIGS.values(), ids=CONFIGS.keys())
def test_half_precision_autocast_and_weights_are_finite(overrides, dtype):
    model = tiny_model(**overrides).cuda().train()
    with torch.autocast("cuda", dtype=dtype):
        output = model(**_batch(overrides, "cuda"))
    output.loss.backward()
    assert torch.isfinite(output.loss) and all(torch.isfinite(p.grad).all() for p in model.parameters())
    half = tiny_model(**overrides).to("cuda", dtype).eval()
    inputs = {k: v for k, v in _batch(overrides, "cuda").items() if k != "labels"}
    assert torch.isfinite(half(**_batch(overrides, "cuda")).logits).all()
    assert half.generate(**inputs, num_beams=3, max_new_tokens=5).shape[0] == 3


def test_cudnn_fused_rnn_kernels_run():
    """The encoder (packed sequences) and, without input feeding, the decoder run nn.LSTM on cuDNN's fused kernels."""
    assert torch.backends.cudnn.is_available() and torch.backends.cudnn.enabled
    model = tiny_model(attention_type="general", input_feeding=False).cuda().train()
    batch = _batch({}, "cuda")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profile:
        model(**batch).loss.backward()
        torch.cuda.synchronize()
    names = " ".join(event.key for event in profile.key_averages()).lower()
    assert "rnn" in names or "lstm" in names or "cudnn" in names, names[:2000]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_trainer_with_mixed_precision_on_gpu(precision, tmp_path):
    data = make_task("numbers", sizes=(256, 16, 16))
    tokenizer = train_tokenizer([t for pair in data["train"]["translation"] for t in pair.values()], kind="word")

    def encode(batch):
        features = tokenizer([pair["en"] for pair in batch["translation"]])
        features["labels"] = tokenizer(text_target=[pair["zh"] for pair in batch["translation"]])["input_ids"]
        return features

    splits = {name: data[name].map(encode, batched=True, remove_columns=["translation"]) for name in data}
    config = RNNSeq2SeqConfig(vocab_size=len(tokenizer), embedding_size=32, hidden_size=64, use_copy=True,
                              use_coverage=True, encoder_layers=1, decoder_layers=1)  # fmt: skip
    model = RNNSeq2SeqForConditionalGeneration(config)
    args = Seq2SeqTrainingArguments(
        tmp_path, max_steps=20, per_device_train_batch_size=32, learning_rate=3e-3, report_to="none",
        **{precision: True}, predict_with_generate=True, generation_num_beams=3, generation_max_length=12, logging_steps=5,
    )  # fmt: skip
    trainer = RNNSeq2SeqTrainer(model=model, args=args, train_dataset=splits["train"],
                                data_collator=DataCollatorForSeq2Seq(tokenizer, model=model),
                                processing_class=tokenizer)  # fmt: skip
    trainer.train()
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    assert next(model.parameters()).is_cuda and all(loss == loss for loss in losses) and losses[-1] < losses[0]
    predictions = trainer.predict(splits["test"]).predictions
    assert predictions.shape[0] == 16
