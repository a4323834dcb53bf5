# Copyright 2026 The hf-rnn-seq2seq authors. Licensed under the Apache License, Version 2.0.
"""RNNSeq2Seq model configuration: the single source of the model's hyperparameters."""

from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig


@strict
class RNNSeq2SeqConfig(PreTrainedConfig):
    r"""
    Configuration of an RNN encoder-decoder ([`RNNSeq2SeqModel`], [`RNNSeq2SeqForConditionalGeneration`]): an LSTM or
    GRU encoder (optionally bidirectional) summarises the source, a bridge turns its final state into the decoder's
    initial state, and an LSTM/GRU decoder attends over the encoder states at every step (Luong et al. 2015, with the
    score functions of Luong and Bahdanau et al. 2015).

    Every field is type-checked and cross-checked when the config is built; an invalid value raises an error that
    names the field and the allowed values.

    Args:
        vocab_size (`int`, *optional*, defaults to 32000):
            Size of the (shared) source and target vocabulary.
        embedding_size (`int`, *optional*, defaults to 256):
            Size `E` of the token embeddings.
        hidden_size (`int`, *optional*, defaults to 512):
            Size `H` of the decoder state and of the attentional vector.
        encoder_hidden_size (`int`, *optional*):
            State size of each encoder direction. Defaults to `hidden_size // 2` when `bidirectional_encoder` (so the
            concatenated encoder output has the decoder's size, as OpenNMT-py's `brnn` does) and to `hidden_size`
            otherwise. The encoder output size is `encoder_output_size` (derived).
        encoder_layers (`int`, *optional*, defaults to 2):
            Number of stacked encoder RNN layers.
        decoder_layers (`int`, *optional*, defaults to 2):
            Number of stacked decoder RNN layers (also readable as `num_hidden_layers`).
        cell_type (`str`, *optional*, defaults to `"lstm"`):
            `"lstm"` or `"gru"`, for both encoder and decoder.
        bidirectional_encoder (`bool`, *optional*, defaults to `True`):
            Run the encoder in both directions and concatenate the two directions' outputs.
        dropout (`float`, *optional*, defaults to 0.3):
            Dropout on the embeddings, between stacked RNN layers, and on the attentional vector before the output
            projection.
        attention_type (`str`, *optional*, defaults to `"general"`):
            Score function between decoder state `s` and encoder state `h`:
            - `"none"`: no attention; the decoder sees the source only through its initial state (the fixed-context
              encoder-decoder of Sutskever et al. 2014 / Cho et al. 2014);
            - `"dot"`: `sᵀ h` (needs `encoder_output_size == hidden_size`);
            - `"general"`: `sᵀ W h` (Luong et al. 2015);
            - `"additive"`: `vᵀ tanh(W_s s + W_h h)` (Bahdanau et al. 2015).
        input_feeding (`bool`, *optional*, defaults to `True`):
            Concatenate the previous attentional vector to the next decoder input (Luong et al. 2015, §3.3). Needs
            attention. Without it, teacher-forced decoding runs the decoder RNN over all steps in one call.
        bridge (`str`, *optional*, defaults to `"dense"`):
            How the decoder's initial state is made from the encoder's final states: `"zeros"` (no initial state),
            `"last"` (the encoder's final state of the matching layer, both directions concatenated; needs
            `encoder_output_size == hidden_size`) or `"dense"` (a learned `tanh(W [all final states])`, which works for
            any layer counts and sizes).
        use_copy (`bool`, *optional*, defaults to `False`):
            Pointer-generator copying (See et al. 2017): at each step a gate `p_gen` mixes the vocabulary distribution
            with the attention distribution scattered onto the source token ids, so the model can copy source tokens.
            With copy on, `logits` are the log of that mixture (normalised log-probabilities). Needs attention.
        copy_extended_vocab (`bool`, *optional*, defaults to `False`):
            With `use_copy`, give source tokens that are outside the vocabulary (read as `unk_token_id`) temporary
            per-example ids `vocab_size … vocab_size + max_source_oovs − 1`, so that the model can emit words it has
            never seen. The source then also comes as `extended_input_ids` and labels may use the extended ids (see
            `hf_rnn_seq2seq.prepare_copy_inputs`); `logits` have width `vocab_size + max_source_oovs`, and extended
            ids fed back to the decoder are read as `unk_token_id`. Off (the default), copied mass goes to the source's
            own ids and every id stays below `vocab_size`, so any tokenizer and any HF script work unchanged.
        max_source_oovs (`int`, *optional*, defaults to 50):
            Number of extended ids per example (`copy_extended_vocab=True` only); further source OOVs stay unknown.
        use_coverage (`bool`, *optional*, defaults to `False`):
            Coverage (See et al. 2017): the sum of the previous steps' attention, `c^t = Σ_{t'<t} a^{t'}`, is a feature
            of the attention scores, so the decoder knows what it has already attended to: a learned vector `w_c` adds
            `w_c c^t_i` to the key of source position i (inside the tanh for `additive`, as in the paper; for `dot` and
            `general` the score becomes `s_tᵀ(W h_i + w_c c^t_i)`). It is carried in the decoder state (`cache`) and
            reordered with the beams. Needs attention. A model
            trained without coverage loads into a config with coverage on: the new weights start at zero, so it
            computes exactly what it did before until training moves them (the paper's recipe: train without, then
            switch coverage on for a short final phase).
        coverage_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight λ of the coverage loss `Σ_i min(a^t_i, c^t_i)` added to each target token's loss (`use_coverage`
            only; 0 turns the loss off but keeps the coverage feature).
        tie_word_embeddings (`bool`, *optional*, defaults to `True`):
            Share the output projection with the decoder's input embedding. When `embedding_size != hidden_size`, a
            bias-free `H → E` projection is put in front of the tied output layer.
        share_encoder_decoder_embeddings (`bool`, *optional*, defaults to `True`):
            One embedding matrix for the source and the target (one shared tokenizer, as in BART and Marian).
        label_smoothing (`float`, *optional*, defaults to 0.0):
            Label smoothing of the model's own loss. Use this, not `TrainingArguments.label_smoothing_factor`: the
            Trainer's smoother recomputes the loss from the logits and would drop any extra loss term of the model.
        initializer_range (`float`, *optional*, defaults to 0.1):
            Weights are drawn from `U(-initializer_range, initializer_range)` (the classic NMT initialisation).
        pad_token_id (`int`, *optional*, defaults to 0):
        bos_token_id (`int`, *optional*, defaults to 1):
        eos_token_id (`int`, *optional*, defaults to 2):
        unk_token_id (`int`, *optional*, defaults to 3):
        decoder_start_token_id (`int`, *optional*, defaults to 1):
            Special token ids; all must be below `vocab_size`. Labels are shifted right with `decoder_start_token_id`
            to make the decoder inputs.
        use_cache (`bool`, *optional*, defaults to `True`):
            Return the decoder's recurrent state (`cache`) so that `generate()` feeds one new token per step.
        cpu_quantization (`str`, *optional*):
            `"dynamic_int8"`: CPU inference with int8 matrix products (`model.quantize_dynamic_int8()` sets it, and
            `from_pretrained` quantises a checkpoint that has it; the weights are stored in float32 either way).
            Inference only.

    Example:

    ```python
    >>> from hf_rnn_seq2seq import RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration
    >>> config = RNNSeq2SeqConfig(vocab_size=1000, embedding_size=64, hidden_size=128, attention_type="additive")
    >>> model = RNNSeq2SeqForConditionalGeneration(config)
    ```
    """

    model_type = "rnn_seq2seq"
    attribute_map = {"num_hidden_layers": "decoder_layers"}
    keys_to_ignore_at_inference = ["cache"]

    vocab_size: int = 32000
    embedding_size: int = 256
    hidden_size: int = 512
    encoder_hidden_size: int | None = None
    encoder_layers: int = 2
    decoder_layers: int = 2
    cell_type: Literal["lstm", "gru"] = "lstm"
    bidirectional_encoder: bool = True
    dropout: float | int = 0.3
    attention_type: Literal["none", "dot", "general", "additive"] = "general"
    input_feeding: bool = True
    bridge: Literal["zeros", "last", "dense"] = "dense"
    use_copy: bool = False
    copy_extended_vocab: bool = False
    max_source_oovs: int = 50
    use_coverage: bool = False
    coverage_loss_weight: float | int = 1.0
    tie_word_embeddings: bool = True
    share_encoder_decoder_embeddings: bool = True
    label_smoothing: float | int = 0.0
    initializer_range: float = 0.1
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    unk_token_id: int | None = 3
    decoder_start_token_id: int | None = 1
    is_encoder_decoder: bool = True
    use_cache: bool = True
    cpu_quantization: Literal["dynamic_int8"] | None = None

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs):
        """transformers only logs a warning when a config of another model type is loaded into this class (and the
        model is then built from whichever of our defaults survive). Here that is an error naming the checkpoint."""
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        model_type = config_dict.get("model_type")
        if model_type is not None and model_type != cls.model_type:
            raise ValueError(
                f"The config of '{pretrained_model_name_or_path}' (config.json) is for model type '{model_type}', "
                f"not '{cls.model_type}': it is not an RNNSeq2Seq checkpoint. Load it with the class of its own "
                "model type (e.g. `AutoModelForSeq2SeqLM`)."
            )
        return config_dict, kwargs

    @property
    def encoder_hidden_size_per_direction(self) -> int:
        """State size of one encoder direction (`encoder_hidden_size`, or its default)."""
        if self.encoder_hidden_size is not None:
            return self.encoder_hidden_size
        return self.hidden_size // 2 if self.bidirectional_encoder else self.hidden_size

    @property
    def encoder_output_size(self) -> int:
        """Width `He` of the encoder outputs: per-direction size × number of directions."""
        return self.encoder_hidden_size_per_direction * (2 if self.bidirectional_encoder else 1)

    @property
    def extended_vocab_size(self) -> int:
        """Width of the output distribution: `vocab_size`, plus `max_source_oovs` with an extended copy vocabulary."""
        return self.vocab_size + (self.max_source_oovs if self.use_copy and self.copy_extended_vocab else 0)

    def validate_sizes(self):
        """Sizes and counts are positive; probabilities are in range."""
        for name in ("vocab_size", "embedding_size", "hidden_size", "encoder_layers", "decoder_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {getattr(self, name)}.")
        if self.encoder_hidden_size is not None and self.encoder_hidden_size < 1:
            raise ValueError(
                f"`encoder_hidden_size` must be a positive integer or None, got {self.encoder_hidden_size}."
            )
        if self.encoder_hidden_size is None and self.bidirectional_encoder and self.hidden_size % 2:
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) must be even when `bidirectional_encoder=True` and "
                "`encoder_hidden_size` is not given (each direction gets hidden_size // 2); set `encoder_hidden_size`."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {self.dropout}.")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"`label_smoothing` must be in [0, 1), got {self.label_smoothing}.")
        if self.max_source_oovs < 1:
            raise ValueError(f"`max_source_oovs` must be a positive integer, got {self.max_source_oovs}.")
        if self.coverage_loss_weight < 0:
            raise ValueError(f"`coverage_loss_weight` must be >= 0, got {self.coverage_loss_weight}.")
        if self.initializer_range <= 0:
            raise ValueError(f"`initializer_range` must be positive, got {self.initializer_range}.")

    def validate_architecture(self):
        """Options that only make sense together."""
        he, h = self.encoder_output_size, self.hidden_size
        if self.attention_type == "dot" and he != h:
            raise ValueError(
                f"`attention_type='dot'` scores sᵀh, so it needs encoder_output_size == hidden_size, got {he} and {h}; "
                "use attention_type='general' or 'additive', or change the sizes."
            )
        if self.input_feeding and self.attention_type == "none":
            raise ValueError(
                "`input_feeding=True` feeds the previous attentional vector and needs attention; with "
                "`attention_type='none'` set `input_feeding=False`."
            )
        for name in ("use_copy", "use_coverage"):
            if getattr(self, name) and self.attention_type == "none":
                raise ValueError(
                    f"`{name}=True` works on the attention distribution and needs attention; with "
                    "`attention_type='none'` there is none. Choose 'dot', 'general' or 'additive'."
                )
        if self.copy_extended_vocab and not self.use_copy:
            raise ValueError("`copy_extended_vocab=True` is an option of the copy mechanism: set `use_copy=True` too.")
        if self.bridge == "last" and he != h:
            raise ValueError(
                f"`bridge='last'` copies the encoder's final state into the decoder, so it needs "
                f"encoder_output_size == hidden_size, got {he} and {h}; use bridge='dense' or change the sizes."
            )
        if self.bridge == "zeros" and self.attention_type == "none":
            raise ValueError(
                "`bridge='zeros'` with `attention_type='none'` gives the decoder no access to the source; "
                "use bridge='last' or 'dense', or an attention type."
            )

    def validate_special_tokens(self):
        """Special token ids must be real rows of the vocabulary."""
        for name in ("pad_token_id", "bos_token_id", "eos_token_id", "unk_token_id", "decoder_start_token_id"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < self.vocab_size:
                raise ValueError(f"`{name}` must be in [0, vocab_size={self.vocab_size}), got {value}.")
        if self.decoder_start_token_id is None:
            raise ValueError("`decoder_start_token_id` must be set: the decoder's first input is this token.")
        if self.copy_extended_vocab and self.unk_token_id is None:
            raise ValueError(
                "`copy_extended_vocab=True` needs `unk_token_id`: extended ids fed back to the decoder are read as it."
            )
        if self.pad_token_id is None:
            raise ValueError("`pad_token_id` must be set: padding and the -100 positions of shifted labels use it.")


__all__ = ["RNNSeq2SeqConfig"]
