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
so this subclass sets `use_cache` back to True (`TrainingArguments.use_cache` is ignored).

With `train_sampling_strategy="group_by_length"`, transformers' `LengthGroupedSampler` cuts each mega-batch of 50
batches into batches of similar lengths (little padding: the fastest way to train an RNN, whose steps run to the
longest target of the batch) and hands them out longest first: every 50 steps the model sweeps from the longest
sentences to the shortest. On the copy/reverse benchmark corpus that order kept our model from learning (BLEU 1.2
after 2 000 steps, where random batches reach 61.7). This subclass keeps the same batches and hands them out in
random order (the first, which holds the longest example, stays first, so that an out-of-memory error comes at
once), as OpenNMT-py does with its length-sorted buckets: `ShuffledLengthGroupedSampler`. Pass
`shuffle_length_groups=False` for transformers' order. Everything else is `Seq2SeqTrainer`'s.
"""

import torch
from torch.utils.data import Sampler
from transformers import Seq2SeqTrainer
from transformers.trainer_pt_utils import LengthGroupedSampler

__all__ = ["RNNSeq2SeqTrainer", "ShuffledLengthGroupedSampler"]


class ShuffledLengthGroupedSampler(Sampler):
    """The indices of `sampler` (a `LengthGroupedSampler`), its consecutive groups of `sampler.batch_size` in random
    order: the first group stays first, and a last, shorter group stays last (so that every batch the data loader
    cuts stays within one group). Random numbers come from `sampler.generator` (None: torch's global generator, which
    `Trainer` seeds)."""

    def __init__(self, sampler: LengthGroupedSampler):
        self.sampler = sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        indices = list(self.sampler)
        size = self.sampler.batch_size
        full = len(indices) // size
        order = [0, *(torch.randperm(full - 1, generator=self.sampler.generator) + 1).tolist()] if full > 1 else []
        shuffled = [i for group in order for i in indices[group * size : (group + 1) * size]]
        return iter(shuffled + indices[len(shuffled) :])


class RNNSeq2SeqTrainer(Seq2SeqTrainer):
    def __init__(self, *args, shuffle_length_groups: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.shuffle_length_groups = shuffle_length_groups  # see the module docstring
        if getattr(self.model, "config", None) is not None:
            self.model.config.use_cache = True  # see the module docstring

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if self.shuffle_length_groups and type(sampler) is LengthGroupedSampler:
            return ShuffledLengthGroupedSampler(sampler)
        return sampler

    def evaluation_loop(self, *args, **kwargs):
        self.gather_function = self.accelerator.gather_for_metrics
        return super().evaluation_loop(*args, **kwargs)
