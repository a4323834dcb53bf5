"""Attention plots: PNG files of the requested size, the p_gen strip, grids; attention matrices from generate()."""

import struct
import sys

import numpy as np
import pytest
import torch

from hf_rnn_seq2seq.plotting_rnn_seq2seq import attention_from_generate, plot_attention, plot_attention_grid

from .conftest import VOCAB, tiny_model, word_level_tokenizer

WORDS = [f"w{i}" for i in range(VOCAB - 4)]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tokenizer():
    return word_level_tokenizer(WORDS)


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def random_attention(rows, columns, seed=0):
    return torch.randn(rows, columns, generator=torch.Generator().manual_seed(seed)).softmax(-1)


def test_plot_attention_writes_png_of_requested_size(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "attention.png"
    fig = plot_attention(
        ["a", "b", "c", "</s>"],
        ["x", "y", "</s>"],
        random_attention(3, 4),
        path=path,
        title="a b c",
        figsize=(4, 3),
        dpi=50,
    )
    assert png_size(path) == (200, 150)
    assert len(fig.axes) == 2  # heatmap + colorbar
    heatmap = fig.axes[0]
    assert [t.get_text() for t in heatmap.get_xticklabels()] == ["a", "b", "c", "</s>"]
    assert [t.get_text() for t in heatmap.get_yticklabels()] == ["x", "y", "</s>"]


def test_p_gen_strip(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "copy.png"
    p_gen = [0.9, 0.2, 0.55]
    fig = plot_attention(
        ["a", "b"], ["x", "y", "z"], random_attention(3, 2).numpy(), p_gen=p_gen, path=path, figsize=(5, 4), dpi=40
    )
    assert png_size(path) == (200, 160)
    assert len(fig.axes) == 3  # heatmap, p_gen strip, colorbar
    strip = fig.axes[1]
    assert [t.get_text() for t in strip.texts] == ["0.90", "0.20", "0.55"]
    with pytest.raises(ValueError, match="p_gen has 2 values"):
        plot_attention(["a", "b"], ["x", "y", "z"], random_attention(3, 2), p_gen=[0.5, 0.5])


def test_awkward_tokens_never_crash(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "cjk.png"
    source = ["一", "二", "$x^", "\n", "", "</s>"]
    with pytest.warns(UserWarning) if not _has_cjk_font() else _no_warning():
        plot_attention(source, ["one", "$", "two"], random_attention(3, 6), path=path, title="cost $5 and $")
    assert png_size(path)[0] > 0
    with pytest.raises(ValueError, match=r"need \(3, 2\)"):
        plot_attention(["a", "b"], ["one", "$", "two"], random_attention(2, 3))


def _has_cjk_font():
    from hf_rnn_seq2seq.plotting_rnn_seq2seq import _font_families

    return _font_families()[1]


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_grid(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "grid.png"
    items = [
        {"source_tokens": ["a", "b"], "output_tokens": ["x"], "attention": random_attention(1, 2), "text": "x"},
        {
            "source_tokens": ["a", "b", "c"],
            "output_tokens": ["x", "y"],
            "attention": random_attention(2, 3, seed=1),
            "p_gen": [0.3, 0.7],
            "title": "copy",
        },
        {"source_tokens": ["a"], "output_tokens": ["x", "y"], "attention": np.ones((2, 1))},
    ]
    fig = plot_attention_grid(items, path, columns=2, panel_size=(3, 2), dpi=50)
    assert png_size(path) == (300, 200)  # 2 columns × 2 rows of 3 × 2 inches
    assert len(fig.axes) == 2 + 3 + 2
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["x", "copy"]


def test_missing_matplotlib_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install hf-rnn-seq2seq\[plot\]"):
        plot_attention(["a"], ["x"], [[1.0]])


@pytest.mark.parametrize(
    "overrides",
    [dict(), dict(use_copy=True), dict(use_copy=True, copy_extended_vocab=True, max_source_oovs=3, use_coverage=True)],
    ids=["plain", "copy", "copyext-coverage"],
)
def test_attention_from_greedy_generate_matches_the_generation_steps(tokenizer, overrides):
    model = tiny_model(seed=3, **overrides)
    text = "w1 w2 Zorb w3" if overrides.get("copy_extended_vocab") else "w1 w2 w5 w3"
    item = attention_from_generate(model, tokenizer, text, max_new_tokens=5)
    attention, p_gen = item["attention"], item["p_gen"]
    assert attention.shape == (len(item["output_tokens"]), len(item["source_tokens"]))
    assert item["source_tokens"] == [*text.split(), "</s>"]  # the OOV word shows as itself
    np.testing.assert_allclose(attention.sum(-1), 1.0, atol=1e-5)
    assert (p_gen is not None) == bool(overrides.get("use_copy"))

    # the same numbers as the step-by-step decoding: generate()'s own per-step attention and copy gate
    if overrides.get("copy_extended_vocab"):
        from hf_rnn_seq2seq import prepare_copy_inputs

        features = prepare_copy_inputs(tokenizer, model.config, text)
        inputs = {key: torch.tensor([features[key]]) for key in ("input_ids", "attention_mask", "extended_input_ids")}
    else:
        inputs = dict(tokenizer(text, return_tensors="pt"))
    out = model.generate(**inputs, max_new_tokens=5, output_attentions=True, return_dict_in_generate=True)
    steps = torch.cat([step[0][0, 0] for step in out.cross_attentions])  # (T, S)
    np.testing.assert_allclose(attention, steps.numpy(), atol=1e-5)
    if p_gen is not None:
        np.testing.assert_allclose(p_gen, torch.cat(out.p_gen, dim=1)[0].numpy(), atol=1e-5)
    assert item["text"] == " ".join(
        item["output_tokens"][:-1] if item["output_tokens"][-1] == "</s>" else item["output_tokens"]
    )


def test_attention_from_beam_search_and_special_tokens(tokenizer, tmp_path):
    model = tiny_model(seed=1, use_copy=True, copy_extended_vocab=True, max_source_oovs=3)
    model.train()
    item = attention_from_generate(
        model, tokenizer, "Zorb w1 w2", num_beams=3, num_return_sequences=2, max_new_tokens=4
    )
    assert model.training  # put back as it was
    assert item["source_tokens"] == ["Zorb", "w1", "w2", "</s>"]
    assert item["attention"].shape == (len(item["output_tokens"]), 4) and item["p_gen"].shape == (
        len(item["output_tokens"]),
    )
    np.testing.assert_allclose(item["attention"].sum(-1), 1.0, atol=1e-5)

    bare = attention_from_generate(
        model, tokenizer, "Zorb w1 w2", num_beams=3, min_new_tokens=2, max_new_tokens=4, skip_special_tokens=True
    )
    assert bare["source_tokens"] == ["Zorb", "w1", "w2"] and "</s>" not in bare["output_tokens"]
    assert bare["attention"].shape == (len(bare["output_tokens"]), 3)

    with pytest.raises(ValueError, match="no attention"):
        attention_from_generate(
            tiny_model(attention_type="none", input_feeding=False), tokenizer, "w1", max_new_tokens=2
        )

    if pytest.importorskip("matplotlib"):
        fig = plot_attention(**item, path=tmp_path / "beam.png", dpi=30)
        assert len(fig.axes) == 3 and (tmp_path / "beam.png").read_bytes()[:8] == PNG_SIGNATURE
