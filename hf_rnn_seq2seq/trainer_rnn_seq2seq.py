# Copyright 2026 The hf-rnn-seq2seq authors. Licensed under the Apache License, Version 2.0.
"""`RNNSeq2SeqTrainer`: transformers' `Seq2SeqTrainer`, with evaluation that counts each example once under several
processes.

transformers 5's `Seq2SeqTrainer.evaluate`/`predict` gather the generated sequences with `accelerator.gather`, which
keeps the samples the distributed sampler repeats to give every process a full last batch: with 2 processes, 13 test
examples come back as 16 predictions (the last 3 repeat the first 3), and BLEU/ROUGE are computed over those 16. This
subclass gathers with `accelerator.gather_for_metrics`, which drops them: predictions in dataset order, each exactly
once, and metrics over the dataset itself.

transformers 5's `Trainer.__init__` also sets `model.config.use_cache = args.use_cache` (default False, to save a
key/value cache's memory while training). Saved with the model, that config makes any model later built from it
(`from_config`, `--config_name`) generate without its recurrent state: every step re-reads the whole prefix, about 7×
slower on 20-token outputs. The recurrent state costs nothing while training (it is only returned without labels),
so this subclass sets `use_cache` back to True (`TrainingArguments.use_cache` is ignored). Everything else is
`Seq2SeqTrainer`'s.
"""

from transformers import Seq2SeqTrainer

__all__ = ["RNNSeq2SeqTrainer"]


class RNNSeq2SeqTrainer(Seq2SeqTrainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if getattr(self.model, "config", None) is not None:
            self.model.config.use_cache = True  # see the module docstring

    def evaluation_loop(self, *args, **kwargs):
        self.gather_function = self.accelerator.gather_for_metrics
        return super().evaluation_loop(*args, **kwargs)
