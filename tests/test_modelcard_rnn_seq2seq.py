"""Model cards: Hub metadata that huggingface_hub parses, the architecture in words, results, citations."""

import pytest
from huggingface_hub import ModelCard

from hf_rnn_seq2seq.modelcard_rnn_seq2seq import build_model_card, describe_architecture, write_model_card

from .conftest import tiny_config, tiny_model


@pytest.mark.parametrize(
    "overrides, words",
    [
        (dict(), ["bidirectional", "LSTM", "Luong general", "input feeding"]),
        (dict(cell_type="gru", attention_type="additive", input_feeding=False), ["GRU", "Bahdanau additive"]),
        (dict(use_copy=True, copy_extended_vocab=True, max_source_oovs=7, use_coverage=True), ["7 per-example ids", "Coverage"]),
        (dict(attention_type="none", input_feeding=False, bridge="last"), ["no attention"]),
    ],
    ids=["default", "gru-additive", "copy-coverage", "no-attention"],
)  # fmt: skip
def test_architecture_is_described_in_words(overrides, words):
    text = describe_architecture(tiny_config(**overrides))
    assert all(word in text for word in words), text


def test_model_card_metadata_results_and_citations(tmp_path):
    model = tiny_model(use_copy=True, use_coverage=True)
    metrics = {"test_bleu": 31.25, "test_chrf": 55.0, "test_runtime": 1.5, "eval_loss": 0.4}
    path = write_model_card(
        model, tmp_path, model_name="demo", datasets=["multi30k"], languages=["de", "en"], metrics=metrics,
        training_command="python scripts/train.py --source_lang de", example_input="ein Hund",
    )  # fmt: skip
    card = ModelCard.load(path)
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and data["license"] == "apache-2.0"
    assert data["language"] == ["de", "en"] and data["datasets"] == ["multi30k"]
    assert data["metrics"] == ["bleu", "chrf"] and {"pointer-generator", "coverage"} <= set(data["tags"])
    assert "| test | bleu | 31.25 |" in card.text and "runtime" not in card.text.split("## Results")[1].split("##")[0]
    assert "python scripts/train.py --source_lang de" in card.text and "ein Hund" in card.text
    for citation in ("sutskever2014sequence", "bahdanau2015neural", "luong2015effective", "see2017get"):
        assert citation in card.text
    assert "No evaluation results" in build_model_card(tiny_model()).text


def test_model_card_extra_sections_and_limitations():
    card = build_model_card(
        tiny_model(),
        sections={"Data": "Multi30k, validation split.", "Attention": "![heatmap](images/a.png)"},
        limitations="Image captions only.",
    )
    text = card.text
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings.index("## Data") == headings.index("## Results") + 1
    assert headings.index("## Attention") == headings.index("## Data") + 1
    assert "Multi30k, validation split." in text and "![heatmap](images/a.png)" in text
    limits = text.split("## Intended uses and limitations")[1].split("## Citations")[0]
    assert "Image captions only." in limits
    assert "Image captions only." not in build_model_card(tiny_model()).text
