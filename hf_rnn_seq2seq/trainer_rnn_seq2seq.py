# Copyright 2026 The hf-rnn-seq2seq authors. Licensed under the Apache License, Version 2.0.
"""`RNNSeq2SeqTrainer`: transformers' `Seq2SeqTrainer`, with evaluation that counts each example once under several
processes.

transformers 5's `Seq2SeqTrainer.evaluate`/`predict` gather the generated sequences with `accelerator.gather`, which
keeps the samples the distributed sampler repeats to give every process a full last batch: with 2 processes, 13 test
examples come back as 16 predictions (the last 3 repeat the first 3), and BLEU/ROUGE are computed over those 16. This
subclass gathers with `accelerator.gather_for_metrics`, which drops them: predictions in dataset order, each exactly
once, and metrics over the dataset itself. Everything else is `Seq2SeqTrainer`'s; on one process it changes nothing.
"""

from transformers import Seq2SeqTrainer

__all__ = ["RNNSeq2SeqTrainer"]


class RNNSeq2SeqTrainer(Seq2SeqTrainer):
    def evaluation_loop(self, *args, **kwargs):
        self.gather_function = self.accelerator.gather_for_metrics
        return super().evaluation_loop(*args, **kwargs)
