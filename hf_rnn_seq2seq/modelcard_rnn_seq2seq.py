# Copyright 2026 The hf-rnn-seq2seq authors. Licensed under the Apache License, Version 2.0.
"""Model cards for trained RNNSeq2Seq models: YAML metadata for the Hub, the architecture in words, use, training,
measured results, limits and citations (the layout of `model_cards/TEMPLATE.md`)."""

from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

CITATIONS = """```bibtex
@inproceedings{sutskever2014sequence,
  title={Sequence to Sequence Learning with Neural Networks}, author={Sutskever, Ilya and Vinyals, Oriol and Le, Quoc V},
  booktitle={NeurIPS}, year={2014}}
@inproceedings{bahdanau2015neural,
  title={Neural Machine Translation by Jointly Learning to Align and Translate},
  author={Bahdanau, Dzmitry and Cho, Kyunghyun and Bengio, Yoshua}, booktitle={ICLR}, year={2015}}
@inproceedings{luong2015effective,
  title={Effective Approaches to Attention-based Neural Machine Translation},
  author={Luong, Minh-Thang and Pham, Hieu and Manning, Christopher D}, booktitle={EMNLP}, year={2015}}
@inproceedings{see2017get,
  title={Get To The Point: Summarization with Pointer-Generator Networks},
  author={See, Abigail and Liu, Peter J and Manning, Christopher D}, booktitle={ACL}, year={2017}}
```"""

_ATTENTION = {
    "none": "no attention (the decoder sees the source only through its initial state)",
    "dot": "Luong dot-product attention",
    "general": "Luong general (bilinear) attention",
    "additive": "Bahdanau additive attention",
}


def describe_architecture(config) -> str:
    """The model in one paragraph of words, from its config."""
    cell = config.cell_type.upper()
    encoder = (
        f"a {'bidirectional ' if config.bidirectional_encoder else ''}{config.encoder_layers}-layer {cell} encoder "
        f"({config.encoder_output_size} outputs)"
    )
    parts = [
        f"An encoder-decoder with {encoder} and a {config.decoder_layers}-layer {cell} decoder of size "
        f"{config.hidden_size}, embeddings of size {config.embedding_size}, {_ATTENTION[config.attention_type]}"
        + (" with input feeding" if config.input_feeding else "")
        + f", and a `{config.bridge}` bridge from the encoder's final state to the decoder's initial state."
    ]
    if config.use_copy:
        vocabulary = (
            f"an extended vocabulary of {config.max_source_oovs} per-example ids for source words outside the "
            "vocabulary"
            if config.copy_extended_vocab
            else "the shared vocabulary"
        )
        parts.append(
            f"A pointer-generator copy mechanism (See et al. 2017) mixes generation and copying over {vocabulary}."
        )
    if config.use_coverage:
        parts.append(
            f"Coverage (See et al. 2017) feeds the sum of past attention into the attention scores, with a coverage "
            f"loss of weight {config.coverage_loss_weight}."
        )
    return " ".join(parts)


def build_model_card(
    model,
    *,
    model_name: str = "rnn-seq2seq model",
    repo_id: str | None = None,
    datasets: list[str] | None = None,
    languages: list[str] | None = None,
    metrics: dict[str, float] | None = None,
    training_command: str | None = None,
    training_summary: str | None = None,
    example_input: str = "",
    license: str = "apache-2.0",
    sections: dict[str, str] | None = None,
    limitations: str | None = None,
) -> ModelCard:
    """A `huggingface_hub.ModelCard` for a trained model (metadata parsed and checked by `ModelCard` on creation).

    `metrics` are measured results, e.g. `{"test_bleu": 31.2, "test_exact_match": 0.8}`; they go into the results
    table and, by name (`bleu`, `chrf`, `rouge1`, ...), into the YAML `metrics` list. `sections` maps further
    headings to Markdown (data, sample outputs, figures), placed after the results; `limitations` adds what is known
    about this model's limits to the generic paragraph.
    """
    config = model.config
    tags = ["rnn_seq2seq", config.cell_type, "seq2seq", "text2text-generation"]
    tags += (["attention"] if config.attention_type != "none" else []) + (
        ["pointer-generator"] if config.use_copy else []
    )
    tags += ["coverage"] if config.use_coverage else []
    metric_names = sorted({name.split("_", 1)[-1] for name in metrics or {}} & {"bleu", "chrf", "rouge1", "rouge2",
                                                                               "rougeL", "exact_match"})  # fmt: skip
    data = ModelCardData(
        library_name="transformers",
        license=license,
        language=languages,
        datasets=datasets,
        metrics=metric_names or None,
        tags=tags,
        pipeline_tag="text2text-generation",
    )
    repo = repo_id or "path/to/this/folder"
    rows = "\n".join(
        f"| {name.split('_', 1)[0]} | {name.split('_', 1)[-1]} | {value:.4g} |"
        for name, value in sorted((metrics or {}).items())
        if isinstance(value, (int, float)) and not name.endswith(("runtime", "per_second", "_loss")) and "_" in name
    )
    body = f"""
# {model_name}

{describe_architecture(config)} {model.num_parameters():,} parameters, vocabulary of {config.vocab_size} tokens.
Built with the `hf-rnn-seq2seq` package (`model_type: rnn_seq2seq`); the folder carries its model code, so it
loads with `trust_remote_code=True` where the package is not installed.

## Use

```python
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{repo}")
model = AutoModelForSeq2SeqLM.from_pretrained("{repo}", trust_remote_code=True)  # or `import hf_rnn_seq2seq` first
inputs = tokenizer(["{example_input}"], return_tensors="pt")
print(tokenizer.batch_decode(model.generate(**inputs, num_beams=5), skip_special_tokens=True))
```

## Training

{training_summary or "Trained with `Seq2SeqTrainer`."}{
        f'''

```bash
{training_command}
```'''
        if training_command
        else ""
    }

## Results

{
        "| split | metric | score |" + chr(10) + "|---|---|---|" + chr(10) + rows
        if rows
        else "No evaluation results were recorded."
    }

{
        "".join(
            f"## {heading}{chr(10)}{chr(10)}{text}{chr(10)}{chr(10)}" for heading, text in (sections or {}).items()
        )
    }## Intended uses and limitations

A small, CPU-friendly sequence-to-sequence model for the task and data it was trained on (translation,
summarisation, normalisation of short texts). RNN models trained on small corpora make errors on long inputs and on
words unseen in training{"; copying helps with the latter" if config.use_copy else ""}. Check the training data's
licence and biases before use.{f"{chr(10)}{chr(10)}{limitations}" if limitations else ""}

## Citations

{CITATIONS}
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


def write_model_card(model, output_dir: str | Path, **kwargs) -> Path:
    """Writes `build_model_card(model, **kwargs)` to `output_dir/README.md` and returns the path."""
    path = Path(output_dir) / "README.md"
    build_model_card(model, **kwargs).save(path)
    return path


__all__ = ["CITATIONS", "build_model_card", "describe_architecture", "write_model_card"]
