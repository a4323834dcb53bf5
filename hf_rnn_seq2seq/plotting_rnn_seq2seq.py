# Copyright 2026 The hf-rnn-seq2seq authors. Licensed under the Apache License, Version 2.0.
"""Attention heatmaps: what each generated token looked at in the source, and (copy models) whether it was generated
or copied.

```python
>>> from hf_rnn_seq2seq.plotting_rnn_seq2seq import attention_from_generate, plot_attention, plot_attention_grid
>>> item = attention_from_generate(model, tokenizer, "one two three", num_beams=5)
>>> item["attention"].shape == (len(item["output_tokens"]), len(item["source_tokens"]))
True
>>> fig = plot_attention(**item, path="attention.png")  # `text` is used as the title
>>> plot_attention_grid([attention_from_generate(model, tokenizer, s) for s in sentences], "grid.png", columns=3)
```

Needs matplotlib (`pip install hf-rnn-seq2seq[plot]`), imported only when a plot is drawn. Figures are built with the
non-interactive Agg canvas, without pyplot: nothing opens a window, the global backend and pyplot's figure list are
left alone, and a returned `Figure` is freed like any object (in a notebook it still displays as an image). Token
labels get a CJK-capable font when one is installed (Noto Sans CJK, Source Han Sans, WenQuanYi, ...); glyphs that no
installed font has are drawn as boxes, never an error.
"""

import math
import unicodedata
import warnings
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data_rnn_seq2seq import decode_with_source_oovs, prepare_copy_inputs

__all__ = ["attention_from_generate", "plot_attention", "plot_attention_grid"]

# Fonts with CJK glyphs, in order of preference; the first installed ones back up the default font.
_CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans CJK TC",
    "Noto Sans CJK JP",
    "Noto Sans CJK KR",
    "Noto Sans SC",
    "Noto Sans TC",
    "Noto Sans JP",
    "Noto Sans KR",
    "Noto Sans Mono CJK SC",
    "Noto Serif CJK SC",
    "Source Han Sans SC",
    "Source Han Sans CN",
    "Source Han Sans",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Droid Sans Fallback",
    "AR PL UMing CN",
    "AR PL UKai CN",
    "Microsoft YaHei",
    "SimHei",
    "PingFang SC",
    "Hiragino Sans GB",
    "Heiti SC",
    "STHeiti",
    "Arial Unicode MS",
    "Unifont",
)
_MAX_INCHES = 40.0


def _matplotlib():
    """Imports matplotlib lazily; returns `(Figure, FigureCanvasAgg)`."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "Plotting attention needs matplotlib, which is not installed: pip install hf-rnn-seq2seq[plot] (or pip "
            "install matplotlib)."
        ) from error
    return Figure, FigureCanvasAgg


@lru_cache(maxsize=1)
def _font_families() -> tuple[tuple[str, ...], bool]:
    """`(font family list, whether a CJK font is among them)`: matplotlib's default sans-serif font, then the
    installed CJK fonts as fallbacks (matplotlib falls back glyph by glyph along the list)."""
    import matplotlib
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    cjk = tuple(name for name in _CJK_FONTS if name in installed)
    default = [name for name in matplotlib.rcParams["font.sans-serif"] if name in installed][:1] or ["DejaVu Sans"]
    return (*default, *cjk), bool(cjk)


def _is_wide(character: str) -> bool:
    return unicodedata.east_asian_width(character) in ("W", "F")


def _label(token: Any) -> str:
    """A token as a tick label: visible whitespace, never empty."""
    text = str(token).replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    return text if text.strip() else repr(text)


def _as_matrix(attention: Any, rows: int, columns: int) -> np.ndarray:
    if isinstance(attention, torch.Tensor):
        attention = attention.detach().float().cpu().numpy()
    matrix = np.asarray(attention, dtype=np.float64)
    while matrix.ndim > 2 and matrix.shape[0] == 1:  # e.g. cross_attentions[0] of one example: (1, 1, T, S)
        matrix = matrix[0]
    if matrix.shape != (rows, columns):
        raise ValueError(
            f"attention has shape {tuple(np.shape(attention))}, but {rows} output tokens and {columns} source tokens "
            f"need ({rows}, {columns}): one row per output token, one column per source token."
        )
    return matrix


def _as_vector(p_gen: Any, rows: int) -> np.ndarray:
    if isinstance(p_gen, torch.Tensor):
        p_gen = p_gen.detach().float().cpu().numpy()
    vector = np.asarray(p_gen, dtype=np.float64).reshape(-1)
    if vector.shape != (rows,):
        raise ValueError(f"p_gen has {vector.size} values, but there are {rows} output tokens (one value each).")
    return vector


def _check_tokens(tokens: Any, name: str) -> list[str]:
    if isinstance(tokens, str) or not isinstance(tokens, Sequence):
        raise TypeError(f"`{name}` must be a list of token strings, got {type(tokens).__name__}.")
    if len(tokens) == 0:
        raise ValueError(f"`{name}` is empty: there is nothing to plot.")
    return [_label(token) for token in tokens]


def _shorten(text: str | None, limit: int = 60) -> str | None:
    """A generated text as a title: at most `limit` characters."""
    if text is None:
        return None
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _auto_size(source_length: int, output_length: int, with_p_gen: bool) -> tuple[float, float]:
    width = 2.2 + 0.32 * source_length + (0.5 if with_p_gen else 0.0) + 0.9
    height = 1.6 + 0.32 * output_length
    return min(max(width, 4.0), _MAX_INCHES), min(max(height, 3.0), _MAX_INCHES)


def _draw(fig, spec, source_tokens, output_tokens, attention, p_gen, title, cmap, families) -> None:
    """Draws one heatmap (plus p_gen strip and colorbar) into the grid cell `spec` of `fig`."""
    source = _check_tokens(source_tokens, "source_tokens")
    output = _check_tokens(output_tokens, "output_tokens")
    matrix = _as_matrix(attention, len(output), len(source))
    font = {"family": list(families)}
    small = max(4.0, min(10.0, 220.0 / max(len(source), len(output), 1)))

    if p_gen is None:
        ax = fig.add_subplot(spec)
        axes = [ax]
    else:
        gates = _as_vector(p_gen, len(output))
        cells = spec.subgridspec(1, 2, width_ratios=[max(len(source), 1), 1.3], wspace=0.02)
        ax = fig.add_subplot(cells[0])
        strip = fig.add_subplot(cells[1], sharey=ax)
        axes = [ax, strip]

    image = ax.imshow(matrix, aspect="auto", cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks(range(len(source)))
    ax.set_xticklabels(source, rotation=90, fontdict=font, fontsize=small, parse_math=False)
    ax.set_yticks(range(len(output)))
    ax.set_yticklabels(output, fontdict=font, fontsize=small, parse_math=False)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    if title:
        ax.set_title(str(title), fontdict=font, parse_math=False)

    if p_gen is not None:
        strip.imshow(gates[:, None], aspect="auto", cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        for row, value in enumerate(gates):
            label = "nan" if math.isnan(value) else f"{value:.2f}"
            color = "white" if not math.isnan(value) and value < 0.5 else "black"
            strip.text(0, row, label, ha="center", va="center", fontsize=small * 0.8, color=color, parse_math=False)
        strip.set_xticks([0])
        strip.set_xticklabels(["p_gen"], rotation=90, fontsize=small)
        strip.tick_params(axis="y", left=False, labelleft=False)

    fig.colorbar(image, ax=axes, label="attention" if p_gen is None else "attention, p_gen", fraction=0.05, pad=0.02)


def _save(fig, path) -> None:
    """Saves at the figure's own size and resolution; PNG unless the file suffix names another known format."""
    suffix = Path(path).suffix.lower().lstrip(".")
    file_format = suffix if suffix in fig.canvas.get_supported_filetypes() else "png"
    fig.savefig(path, dpi=fig.dpi, format=file_format)


class _Quiet:
    """Context for building and saving figures: the CJK font fallback as the default family, no warnings about glyphs
    that no installed font has (they are drawn as boxes)."""

    def __init__(self, texts: list[str]):
        self.texts = texts

    def __enter__(self):
        import matplotlib

        families, has_cjk = _font_families()
        if not has_cjk and any(_is_wide(c) for text in self.texts for c in text):
            warnings.warn(
                "No font with CJK glyphs is installed (e.g. Noto Sans CJK: apt-get install fonts-noto-cjk), so the "
                "CJK tokens of this plot are drawn as boxes.",
                stacklevel=3,
            )
        self.families = families
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.filterwarnings("ignore", message=r".*[Gg]lyph .* missing from")
        self._rc = matplotlib.rc_context({"font.family": list(families)})
        self._rc.__enter__()
        return self

    def __exit__(self, *exc):
        self._rc.__exit__(*exc)
        self._warnings.__exit__(*exc)
        return False


def _texts(item: dict) -> list[str]:
    return [str(t) for key in ("source_tokens", "output_tokens") for t in (item.get(key) or [])] + [
        str(item.get("title") or "")
    ]


def plot_attention(
    source_tokens: list[str],
    output_tokens: list[str],
    attention: Any,
    p_gen: Sequence[float] | None = None,
    path: str | Path | None = None,
    title: str | None = None,
    *,
    figsize: tuple[float, float] | None = None,
    dpi: float = 100,
    cmap: str = "viridis",
    **ignored: Any,
):
    """
    Draws an attention matrix as a heatmap: source tokens along the x axis, generated tokens along the y axis (one
    row per step), with a colorbar; with `p_gen`, an extra column beside it shows each step's probability of
    generating from the vocabulary (1 − p_gen is the copy probability), written out in each cell.

    Args:
        source_tokens (`list[str]`): the S source tokens (columns).
        output_tokens (`list[str]`): the T generated tokens (rows).
        attention (array-like or `torch.Tensor`, `(T, S)`): row t is the attention of the step that produced
            output token t (leading dimensions of size 1, as in `cross_attentions[0]`, are dropped). Values are shown
            on a fixed 0–1 scale.
        p_gen (sequence of T floats, *optional*): the copy gate of each step (copy models).
        path (`str` or `Path`, *optional*): where to save the figure; PNG unless the suffix names another format
            matplotlib writes (`.pdf`, `.svg`, ...). The file has exactly `figsize × dpi` pixels.
        title (`str`, *optional*): the title above the heatmap.
        figsize (`(width, height)` in inches, *optional*): defaults to a size that grows with S and T.
        dpi (`float`, defaults to 100): resolution of the figure and the saved file.
        cmap (`str`, defaults to `"viridis"`): matplotlib colormap.
        ignored: other keys of an [`attention_from_generate`] result (`text`), so `plot_attention(**item)` works;
            `text` becomes the title when no title is given.

    Returns:
        `matplotlib.figure.Figure`: the figure (Agg canvas; `fig.savefig(...)` saves it again in any format).

    Raises:
        `ImportError`: without matplotlib. `ValueError`/`TypeError`: shapes or token lists that do not match.
    """
    unknown = set(ignored) - {"text"}
    if unknown:
        raise TypeError(f"plot_attention got unexpected keyword arguments {sorted(unknown)}.")
    if title is None:
        title = _shorten(ignored.get("text"))
    Figure, FigureCanvasAgg = _matplotlib()
    item = {"source_tokens": source_tokens, "output_tokens": output_tokens, "title": title}
    with _Quiet(_texts(item)) as quiet:
        if figsize is None:
            figsize = _auto_size(len(source_tokens), len(output_tokens), p_gen is not None)
        fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
        FigureCanvasAgg(fig)
        spec = fig.add_gridspec(1, 1)[0]
        _draw(fig, spec, source_tokens, output_tokens, attention, p_gen, title, cmap, quiet.families)
        if path is not None:
            _save(fig, path)
    return fig


def plot_attention_grid(
    items: Sequence[dict],
    path: str | Path | None = None,
    columns: int = 2,
    *,
    panel_size: tuple[float, float] | None = None,
    dpi: float = 100,
    cmap: str = "viridis",
):
    """
    Draws several attention matrices into one figure, `columns` per row (e.g. a few test sentences side by side).

    Args:
        items (list of `dict`): one per panel, with the arguments of [`plot_attention`]: `source_tokens`,
            `output_tokens`, `attention`, and optionally `p_gen` and `title` (else `text` is the title), e.g. the
            results of [`attention_from_generate`].
        path (`str` or `Path`, *optional*): where to save the figure (PNG unless the suffix says otherwise).
        columns (`int`, defaults to 2): panels per row.
        panel_size (`(width, height)` in inches, *optional*): size of each panel; defaults to one that fits the
            largest item. The figure is `columns × rows` panels.
        dpi (`float`, defaults to 100), cmap (`str`, defaults to `"viridis"`): as in [`plot_attention`].

    Returns:
        `matplotlib.figure.Figure`.
    """
    items = list(items)
    if not items:
        raise ValueError("plot_attention_grid needs at least one item.")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise TypeError(
                f"items[{i}] must be a dict (e.g. from attention_from_generate), got {type(item).__name__}."
            )
        missing = [key for key in ("source_tokens", "output_tokens", "attention") if key not in item]
        if missing:
            raise ValueError(f"items[{i}] lacks {missing}.")
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise ValueError(f"columns must be a positive int, got {columns!r}.")
    columns = min(columns, len(items))
    rows = math.ceil(len(items) / columns)
    Figure, FigureCanvasAgg = _matplotlib()
    texts = [text for item in items for text in _texts(item)]
    with _Quiet(texts) as quiet:
        if panel_size is None:
            sizes = [
                _auto_size(len(item["source_tokens"]), len(item["output_tokens"]), item.get("p_gen") is not None)
                for item in items
            ]
            panel_size = (max(w for w, _ in sizes), max(h for _, h in sizes) + 0.3)
        figsize = (min(panel_size[0] * columns, _MAX_INCHES * 2), min(panel_size[1] * rows, _MAX_INCHES * 2))
        fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
        FigureCanvasAgg(fig)
        grid = fig.add_gridspec(rows, columns)
        for i, item in enumerate(items):
            title = item.get("title") or _shorten(item.get("text"))
            _draw(
                fig,
                grid[i // columns, i % columns],
                item["source_tokens"],
                item["output_tokens"],
                item["attention"],
                item.get("p_gen"),
                title,
                cmap,
                quiet.families,
            )
        if path is not None:
            _save(fig, path)
    return fig


# ---------------------------------------------------------------------------------------------------------------------
# Attention of a generated sentence
# ---------------------------------------------------------------------------------------------------------------------


def _token(tokenizer, token_id: int, source_oovs: list[str], vocab_size: int) -> str:
    if token_id >= vocab_size:
        slot = token_id - vocab_size
        return source_oovs[slot] if slot < len(source_oovs) else str(tokenizer.unk_token)
    if token_id >= len(tokenizer):
        return str(tokenizer.unk_token)
    token = tokenizer.convert_ids_to_tokens(token_id)
    return str(tokenizer.unk_token) if token is None else token


def _eos_ids(model) -> set[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = model.config.eos_token_id
    if eos is None:
        return set()
    return {int(eos)} if isinstance(eos, int) else {int(e) for e in eos}


def attention_from_generate(
    model,
    tokenizer,
    text: str,
    *,
    skip_special_tokens: bool = False,
    **generate_kwargs: Any,
) -> dict[str, Any]:
    """
    Generates an output for one source sentence and returns its attention matrix (and copy gate), ready for
    [`plot_attention`].

    The sentence is generated with `model.generate(**generate_kwargs)` (greedy, beam search, sampling...; with
    `num_return_sequences > 1` the first, best, sequence is used). The attention is then read from one teacher-forced
    forward pass over that sequence with `output_attentions=True`: the model's step-by-step (cached) and full forward
    passes compute the same numbers, so these are exactly the alignments the decoding used, for every decoding
    strategy, without following `beam_indices` through the per-step outputs of beam search.

    A copy model with an extended vocabulary (`copy_extended_vocab=True`) gets its `extended_input_ids` from
    [`prepare_copy_inputs`]; copied out-of-vocabulary words appear as themselves among the source and output tokens.

    Args:
        model ([`RNNSeq2SeqForConditionalGeneration`]): a model with attention (`attention_type` not `"none"`). It is
            run in eval mode (and put back into training mode afterwards if it was in it).
        tokenizer: the model's (fast, for extended copy models) tokenizer.
        text (`str`): the source sentence.
        skip_special_tokens (`bool`, defaults to `False`): also drop the special tokens (end-of-sequence, ...) from
            the source columns and the output rows. By default they are kept: the model attends to the source's
            `</s>` and really generates the final `</s>`, and with them every row sums to 1. The decoder start token
            (an input, not an output) and padding are always dropped.
        generate_kwargs: passed to `model.generate` (`num_beams`, `max_new_tokens`, `coverage_penalty`, ...).

    Returns:
        `dict` with
        - `source_tokens` (`list[str]`, S), `output_tokens` (`list[str]`, T);
        - `attention` (`np.ndarray` `(T, S)`): row t, the attention of the step that produced output token t;
        - `p_gen` (`np.ndarray` `(T,)` or `None`): the copy gate of each step (copy models);
        - `text` (`str`): the generated text (special tokens removed, copied OOV words included).
    """
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a string (one sentence), got {type(text).__name__}.")
    config = model.config
    extended = bool(getattr(config, "use_copy", False) and getattr(config, "copy_extended_vocab", False))
    vocab_size = int(config.vocab_size)
    if extended:
        features = prepare_copy_inputs(tokenizer, config, text)
        input_ids = torch.tensor([features["input_ids"]], dtype=torch.long)
        attention_mask = torch.tensor([features["attention_mask"]], dtype=torch.long)
        extended_input_ids = torch.tensor([features["extended_input_ids"]], dtype=torch.long)
        source_oovs = list(features["source_oovs"])
    else:
        encoded = tokenizer(text, return_tensors="pt")
        input_ids = encoded["input_ids"]
        attention_mask = encoded.get("attention_mask")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        extended_input_ids, source_oovs = None, []
    if input_ids.shape[-1] == 0:
        raise ValueError(f"{text!r} tokenises to no tokens: there is no source to attend to.")

    device = model.device
    inputs = {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}
    if extended_input_ids is not None:
        inputs["extended_input_ids"] = extended_input_ids.to(device)
    generate_kwargs = {k: v for k, v in generate_kwargs.items() if k not in ("output_attentions", "output_scores")}

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            generated = model.generate(**inputs, **generate_kwargs)
            sequences = generated if isinstance(generated, torch.Tensor) else generated.sequences
            sequence = sequences[0].tolist()
            eos_ids = _eos_ids(model)
            end = next((i + 1 for i in range(1, len(sequence)) if sequence[i] in eos_ids), len(sequence))
            sequence = sequence[:end]
            pad_id = config.pad_token_id
            while len(sequence) > 1 and sequence[-1] == pad_id and pad_id not in eos_ids:
                sequence = sequence[:-1]
            if len(sequence) < 2:
                raise ValueError("generate() returned no new token: there is no attention to show.")
            decoder_input_ids = torch.tensor([sequence[:-1]], dtype=torch.long, device=device)
            outputs = model(
                **inputs,
                decoder_input_ids=decoder_input_ids,
                output_attentions=True,
                use_cache=False,
                return_dict=True,
            )
    finally:
        model.train(was_training)

    if outputs.cross_attentions is None or outputs.cross_attentions[0] is None:
        raise ValueError(
            "This model has no attention (attention_type='none'): every step sees the same fixed source summary, so "
            "there is no alignment to plot."
        )
    attention = outputs.cross_attentions[0][0, 0].float().cpu().numpy()  # (T, S)
    p_gen = outputs.p_gen[0].float().cpu().numpy() if outputs.p_gen is not None else None

    source_ids = (extended_input_ids if extended_input_ids is not None else input_ids)[0].tolist()
    keep_columns = [i for i, m in enumerate(attention_mask[0].tolist()) if m]
    output_ids = sequence[1:]
    keep_rows = list(range(len(output_ids)))
    if skip_special_tokens:
        special = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
        keep_columns = [i for i in keep_columns if source_ids[i] not in special]
        keep_rows = [t for t in keep_rows if output_ids[t] not in special]
        if not keep_columns or not keep_rows:
            raise ValueError("Nothing is left after removing the special tokens.")

    generated_text = (
        decode_with_source_oovs(tokenizer, sequence, source_oovs, vocab_size)
        if extended
        else tokenizer.decode(sequence, skip_special_tokens=True)
    )
    return {
        "source_tokens": [_token(tokenizer, source_ids[i], source_oovs, vocab_size) for i in keep_columns],
        "output_tokens": [_token(tokenizer, output_ids[t], source_oovs, vocab_size) for t in keep_rows],
        "attention": attention[np.ix_(keep_rows, keep_columns)],
        "p_gen": p_gen[keep_rows] if p_gen is not None else None,
        "text": generated_text,
    }
