"""LoRA adapters from PEFT on the linear layers and the embeddings: train with Seq2SeqTrainer, save the adapter,
reload it onto a fresh base model, generate identically. (PEFT cannot target nn.LSTM/nn.GRU weights.)"""

import pytest
import torch

from .conftest import tiny_model
from .test_trainer_rnn_seq2seq import make_trainer, reversal_dataset

peft = pytest.importorskip("peft")

# Every linear layer of a copy + coverage model, and the shared embedding: the bridge's dense maps ("dense.0" for h,
# "dense.1" for c), the attention's key projection and W_c ("combine"), the copy gate, the H → E output projection.
TARGETS = ["dense.0", "dense.1", "key_proj", "combine", "copy_gate", "output_projection", "shared"]


@pytest.mark.parametrize("task_type", ["SEQ_2_SEQ_LM", None], ids=["seq2seq-lm", "generic"])
def test_lora_trains_saves_and_reloads_onto_a_fresh_base(tmp_path, task_type):
    overrides = dict(use_copy=True, use_coverage=True, embedding_size=16, hidden_size=24)
    model = tiny_model(**overrides)
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, task_type=task_type)
    peft_model = peft.get_peft_model(model, lora)
    adapted = {name.split(".lora_")[0] for name, _ in peft_model.named_parameters() if ".lora_" in name}
    assert len(adapted) == len(TARGETS), sorted(adapted)
    frozen_before = {n: p.detach().clone() for n, p in peft_model.named_parameters() if not p.requires_grad}

    trainer = make_trainer(tmp_path / "run", peft_model, reversal_dataset(64), max_steps=4, learning_rate=1e-2)
    trainer.train()
    for name, parameter in peft_model.named_parameters():
        if name in frozen_before:
            assert torch.equal(parameter, frozen_before[name]), f"{name} is frozen but changed"
    assert any(p.abs().sum() > 0 for n, p in peft_model.named_parameters() if "lora_B" in n), "LoRA B stayed 0"

    peft_model.eval()
    source = {
        "input_ids": torch.tensor([[5, 6, 7, 8], [9, 10, 11, 0]]),
        "attention_mask": torch.tensor([[1] * 4, [1, 1, 1, 0]]),
    }
    expected = peft_model.generate(**source, num_beams=3, max_new_tokens=6)
    peft_model.save_pretrained(tmp_path / "adapter")
    reloaded = peft.PeftModel.from_pretrained(tiny_model(**overrides), tmp_path / "adapter").eval()
    assert torch.equal(reloaded.generate(**source, num_beams=3, max_new_tokens=6), expected)


def test_embeddings_are_rejected_with_a_clear_error():
    with pytest.raises(ValueError, match="token ids, not embeddings"):
        tiny_model()(inputs_embeds=torch.zeros(1, 2, 8), decoder_input_ids=torch.tensor([[1]]))
