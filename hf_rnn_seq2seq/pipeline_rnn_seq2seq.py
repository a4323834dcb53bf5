# Copyright 2026 The hf-rnn-seq2seq authors. Licensed under the Apache License, Version 2.0.
"""A text → text generation pipeline for RNN encoder-decoders (transformers 5 removed `translation`,
`summarization` and `text2text-generation`).

```python
>>> import hf_rnn_seq2seq
>>> from hf_rnn_seq2seq.pipeline_rnn_seq2seq import RNNSeq2SeqPipeline, register_pipeline
>>> register_pipeline()  # task "rnn-seq2seq-generation" (idempotent)
>>> from transformers import pipeline
>>> translator = pipeline("rnn-seq2seq-generation", model="my-rnn")  # a folder with model + tokenizer
>>> translator("one two three", num_beams=5)
[{'generated_text': '一 二 三'}]
>>> translator(["one two", "three"], num_beams=5, num_return_sequences=2)  # n-best: a list per input
[[{'generated_text': '一 二'}, {'generated_text': '一 三'}],
 [{'generated_text': '三'}, {'generated_text': '二'}]]
>>> RNNSeq2SeqPipeline(model=model, tokenizer=tokenizer)("one two")  # without the registry
```

Saving and loading:

- A plain checkpoint (`model.save_pretrained(d)` + `tokenizer.save_pretrained(d)`, a `Seq2SeqTrainer` output, or
  `pipe.save_pretrained(d, custom_code=False)`) loads with `pipeline("rnn-seq2seq-generation", model=d)` in a process
  that has run `register_pipeline()`.
- `pipe.save_pretrained(d)` is transformers' mechanism for registered custom pipelines: it also writes
  `custom_pipelines` into `config.json` and copies this file and the package files it imports
  (`data_rnn_seq2seq.py`, `configuration_rnn_seq2seq.py`) into `d`. That folder loads with
  `pipeline(model=d, trust_remote_code=True)` (the task is read from the config); transformers then requires
  `trust_remote_code=True` (or `pipeline_class=RNNSeq2SeqPipeline`) for that task name, also in-process. The model is
  still built by the installed package (`import hf_rnn_seq2seq` must have run): see
  `RNNSeq2SeqPipeline.save_pretrained` for what a process without the package would need.
- `pipeline("translation", ...)` cannot be used: transformers 5 raises "The task translation has been removed" before
  it looks at the registry, for any model object. Only a saved folder whose `config.json` names its custom pipeline
  "translation" gets past that check, which relies on the order of checks inside `transformers.pipeline`.
"""

import enum
import os
from collections.abc import Sequence
from typing import Any

import torch
from transformers import Pipeline

from .data_rnn_seq2seq import batch_decode_keeping_unknown, batch_decode_with_source_oovs, prepare_copy_inputs

__all__ = ["TASK", "RNNSeq2SeqPipeline", "register_pipeline"]

TASK = "rnn-seq2seq-generation"


class ReturnType(enum.Enum):
    TENSORS = 0
    TEXT = 1


def _per_example_oovs(value: Any) -> list[str]:
    """One example's OOV words from what the pipeline's batching hands on: the list itself (`["Zorb"]`, `[]`), or that
    list wrapped in a batch of one (`[["Zorb"]]`). Words are strings, so the two cannot be confused."""
    if all(isinstance(word, str) for word in value):
        return list(value)
    if len(value) != 1:
        raise ValueError(f"Expected the OOV words of one example, got {len(value)} lists.")
    return list(value[0])


def _batch_oovs(value: Any, batch_size: int) -> list[list[str]]:
    """The OOV words of every row of a batch: `preprocess` stores one example's list, which the batching collate
    function gathers into a list of lists (and leaves alone with `batch_size=1`)."""
    if all(isinstance(word, str) for word in value):  # one example, not collated (also `[]`)
        value = [value]
    if len(value) != batch_size:
        raise ValueError(f"Got source OOV lists for {len(value)} examples but a batch of {batch_size}.")
    return [list(oovs) for oovs in value]


class RNNSeq2SeqPipeline(Pipeline):
    """
    Text → text generation with an RNN encoder-decoder ([`RNNSeq2SeqForConditionalGeneration`] or any
    `AutoModelForSeq2SeqLM` whose `generate` takes `input_ids` and `attention_mask`): translation, summarisation,
    transliteration...

    Call it with a string or a list of strings. Generation parameters (`num_beams`, `num_return_sequences`,
    `max_new_tokens`, `length_penalty`, `coverage_penalty`, `do_sample`, `top_k`, `no_repeat_ngram_size`,
    `generation_config`, ...) can be given when building the pipeline (they apply to every call) or per call; they are
    passed to `model.generate`, on top of the model's generation config.

    With a copy model that has an extended vocabulary (`config.copy_extended_vocab=True`), sources are tokenised with
    [`prepare_copy_inputs`] (unknown source words get per-example ids that the model can copy) and outputs are decoded
    with [`batch_decode_with_source_oovs`], so copied words that the tokenizer does not know appear in the text (plain
    `tokenizer.decode` would drop them). With any model the unknown token stays in the text, where
    `tokenizer.decode(..., skip_special_tokens=True)` would drop it ([`batch_decode_keeping_unknown`]): it marks a word
    the model could not spell, and outputs of plain and copy models read and score alike.

    Returns:
        For a string: a list of `num_return_sequences` dicts (best first), each with
        - `generated_text` (`str`), unless `return_text=False`;
        - `generated_token_ids` (`torch.Tensor`, the generated ids, extended ids included), with `return_tensors=True`.

        For a list of strings: a list with one such list per input; with one sequence per input (the default) the
        inner lists are flattened into their only dict, as transformers' former `translation` and
        `text2text-generation` pipelines did.

    Pipeline parameters besides the generation ones:
        return_text (`bool`, defaults to `True`), return_tensors (`bool`, defaults to `False`): what each dict holds.
        skip_special_tokens (`bool`, defaults to `True`), clean_up_tokenization_spaces (`bool`, *optional*): decoding.
        max_source_length (`int`, *optional*): truncate sources to this many tokens.
        batch_size (`int`): sources per `generate` call (padding never changes a result of this model).
    """

    _pipeline_calls_generate = True
    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True

    def _sanitize_parameters(
        self,
        return_tensors: bool | None = None,
        return_text: bool | None = None,
        return_type: ReturnType | None = None,
        clean_up_tokenization_spaces: bool | None = None,
        skip_special_tokens: bool | None = None,
        max_source_length: int | None = None,
        truncation: bool | str | None = None,
        **generate_kwargs,
    ):
        preprocess_params: dict[str, Any] = {}
        if max_source_length is not None:
            preprocess_params["max_source_length"] = max_source_length
        if truncation is not None:
            preprocess_params["truncation"] = truncation

        postprocess_params: dict[str, Any] = {}
        if return_type is not None:
            postprocess_params["return_text"] = return_type == ReturnType.TEXT
            postprocess_params["return_tensors"] = return_type == ReturnType.TENSORS
        if return_tensors is not None:
            postprocess_params["return_tensors"] = bool(return_tensors)
            if return_text is None and return_tensors:
                postprocess_params["return_text"] = False
        if return_text is not None:
            postprocess_params["return_text"] = bool(return_text)
        if clean_up_tokenization_spaces is not None:
            postprocess_params["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        if skip_special_tokens is not None:
            postprocess_params["skip_special_tokens"] = skip_special_tokens

        return preprocess_params, generate_kwargs, postprocess_params

    def __call__(self, inputs: str | list[str], **kwargs):
        """Generates text for `inputs` (a string, a list of strings, a dataset or a generator of strings); see the
        class docstring for the parameters and the returned structure."""
        if not isinstance(inputs, (str, Sequence)) and not hasattr(inputs, "__iter__"):
            raise TypeError(f"RNNSeq2SeqPipeline takes a string or a list of strings, got {type(inputs).__name__}.")
        result = super().__call__(inputs, **kwargs)
        if (
            isinstance(inputs, list)
            and all(isinstance(text, str) for text in inputs)
            and all(len(res) == 1 for res in result)
        ):
            return [res[0] for res in result]
        return result

    @property
    def _uses_extended_vocab(self) -> bool:
        config = self.model.config
        return bool(getattr(config, "use_copy", False) and getattr(config, "copy_extended_vocab", False))

    def preprocess(self, inputs: str, max_source_length: int | None = None, truncation: bool | str | None = None):
        if not isinstance(inputs, str):
            raise TypeError(f"Each input must be a string, got {type(inputs).__name__}: {inputs!r}.")
        if truncation is None:
            truncation = max_source_length is not None
        if self._uses_extended_vocab:
            features = prepare_copy_inputs(
                self.tokenizer, self.model.config, inputs, max_length=max_source_length, truncation=truncation
            )
            model_inputs = {
                "input_ids": torch.tensor([features["input_ids"]], dtype=torch.long),
                "attention_mask": torch.tensor([features["attention_mask"]], dtype=torch.long),
                "extended_input_ids": torch.tensor([features["extended_input_ids"]], dtype=torch.long),
                "source_oovs": features["source_oovs"],
            }
        else:
            encoded = self.tokenizer(inputs, max_length=max_source_length, truncation=truncation, return_tensors="pt")
            model_inputs = {"input_ids": encoded["input_ids"]}
            if "attention_mask" in encoded:
                model_inputs["attention_mask"] = encoded["attention_mask"]
        if model_inputs["input_ids"].shape[-1] == 0:
            raise ValueError(
                f"The input {inputs!r} tokenises to no tokens at all; the encoder needs at least one (a tokenizer "
                "that appends an end-of-sequence token always gives one)."
            )
        return model_inputs

    def _forward(self, model_inputs: dict, **generate_kwargs):
        input_ids = model_inputs["input_ids"]
        attention_mask = model_inputs.get("attention_mask")
        batch_size = input_ids.shape[0]
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        source_oovs = None
        if "extended_input_ids" in model_inputs:
            extended = model_inputs["extended_input_ids"]
            if attention_mask is not None:
                # the batching collate function pads unknown keys with 0, not with the pad id of input_ids
                extended = torch.where(attention_mask.bool(), extended, input_ids)
            inputs["extended_input_ids"] = extended
            source_oovs = _batch_oovs(model_inputs["source_oovs"], batch_size)

        generate_kwargs = self._prepare_generate_kwargs(generate_kwargs)
        output = self.model.generate(**inputs, **generate_kwargs)
        sequences = output if isinstance(output, torch.Tensor) else output.sequences
        per_input = sequences.shape[0] // batch_size
        model_outputs = {"output_ids": sequences.reshape(batch_size, per_input, *sequences.shape[1:])}
        if source_oovs is not None:
            model_outputs["source_oovs"] = source_oovs
        return model_outputs

    def postprocess(
        self,
        model_outputs: dict,
        return_text: bool = True,
        return_tensors: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        skip_special_tokens: bool = True,
    ) -> list[dict[str, Any]]:
        output_ids = model_outputs["output_ids"][0]  # (num_return_sequences, length)
        texts = None
        if return_text:
            if "source_oovs" in model_outputs:
                oovs = _per_example_oovs(model_outputs["source_oovs"])
                texts = batch_decode_with_source_oovs(
                    self.tokenizer,
                    output_ids,
                    [oovs] * output_ids.shape[0],
                    self.model.config.vocab_size,
                    skip_special_tokens=skip_special_tokens,
                )
            else:
                texts = batch_decode_keeping_unknown(  # `<unk>` kept, as for copy models
                    self.tokenizer,
                    output_ids,
                    skip_special_tokens=skip_special_tokens,
                    clean_up_tokenization_spaces=clean_up_tokenization_spaces,
                )
        records = []
        for i in range(output_ids.shape[0]):
            record = {}
            if texts is not None:
                record["generated_text"] = texts[i]
            if return_tensors:
                record["generated_token_ids"] = output_ids[i]
            records.append(record)
        return records

    def save_pretrained(self, save_directory, *, custom_code: bool = True, **kwargs) -> None:
        """Saves the model and the tokenizer to `save_directory`.

        With `custom_code=True` (transformers' behaviour for a registered custom pipeline) the pipeline is registered
        first, so transformers also writes `custom_pipelines` (task `"rnn-seq2seq-generation"`) into `config.json`
        and copies this module and the package files it imports next to the weights. The folder then loads with
        `pipeline(model=save_directory, trust_remote_code=True)`, the task being read from the config, in a process
        where the model type is known (`import hf_rnn_seq2seq` has run): the folder holds no modeling code and no
        `auto_map`. For a process without the package, the config also needs `auto_map` entries for `AutoConfig` and
        `AutoModelForSeq2SeqLM` and the folder `configuration_rnn_seq2seq.py` and `modeling_rnn_seq2seq.py`, which is
        what `register_for_auto_class` on the config and model classes would add. transformers then asks for
        `trust_remote_code=True` (or `pipeline_class=RNNSeq2SeqPipeline`) for that task name, also in-process.

        With `custom_code=False` only the model and tokenizer are saved (no code, no `custom_pipelines`), as
        `model.save_pretrained` and `tokenizer.save_pretrained` would: the folder loads with
        `pipeline("rnn-seq2seq-generation", model=save_directory)` after `register_pipeline()`, without
        `trust_remote_code`.

        Either way `self.model.config` is left as it was (transformers would leave `custom_pipelines` on it, and a
        later `model.save_pretrained` would then write a folder that asks for code it does not hold).
        """
        config = self.model.config
        had_custom = "custom_pipelines" in vars(config)
        previous = vars(config).get("custom_pipelines")
        try:
            if custom_code:
                register_pipeline()
                super().save_pretrained(save_directory, **kwargs)
            else:
                if had_custom:
                    del config.custom_pipelines
                if os.path.isfile(save_directory):
                    raise ValueError(f"`save_directory` ({save_directory}) must be a directory, not a file.")
                os.makedirs(save_directory, exist_ok=True)
                self.model.save_pretrained(save_directory, **kwargs)
                if self.tokenizer is not None:
                    self.tokenizer.save_pretrained(save_directory, **kwargs)
        finally:
            if had_custom:
                config.custom_pipelines = previous
            elif "custom_pipelines" in vars(config):
                del config.custom_pipelines


def register_pipeline() -> None:
    """Registers [`RNNSeq2SeqPipeline`] with transformers under the task `"rnn-seq2seq-generation"` (model class
    `AutoModelForSeq2SeqLM`), so that `transformers.pipeline("rnn-seq2seq-generation", model=...)` builds it. Calling
    it again does nothing."""
    from transformers import AutoModelForSeq2SeqLM
    from transformers.pipelines import PIPELINE_REGISTRY

    current = PIPELINE_REGISTRY.supported_tasks.get(TASK)
    if (
        current is not None
        and current.get("impl") is RNNSeq2SeqPipeline
        and TASK in getattr(RNNSeq2SeqPipeline, "_registered_impl", {})
    ):
        return
    PIPELINE_REGISTRY.register_pipeline(
        TASK, pipeline_class=RNNSeq2SeqPipeline, pt_model=AutoModelForSeq2SeqLM, type="text"
    )
