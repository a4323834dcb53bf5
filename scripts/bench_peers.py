"""Our side of the side-by-side speed benchmark against OpenNMT-py and JoeyNMT (the peer harness in
../shared/bench/peers): the same model, data, batches, thread count and metrics, trained with `RNNSeq2SeqTrainer` and
decoded with `generate()` exactly as a user would, written as `result.json` files in the peers' schema, so that their
`bench.py report` prints our runs next to theirs.

    # one variant on the copy/reverse task, 1 thread (runs go to /tmp/peer-bench/runs/hf_<variant>_<task>_L1_T<T>)
    python scripts/bench_peers.py train --variant general --data /tmp/peer-bench/data/copyrev --steps 200 --threads 1
    python scripts/bench_peers.py translate --run /tmp/peer-bench/runs/hf_general_copyrev_L1_T1 --threads 1
    python scripts/bench_peers.py translate --run /tmp/peer-bench/runs/hf_general_copyrev_L1_T1 --threads 1 \\
        --fixed-length 20 --tag fixed20 --repeat 3          # decode speed alone: every output exactly 20 tokens
    python3 ../shared/bench/peers/bench.py report /tmp/peer-bench/runs/*_copyrev_L1_T1   # the peers' own table
    # everything back to back (peers first, then ours, per variant) and one table with the ratios ours / peer
    python scripts/bench_peers.py suite --data /tmp/peer-bench/data/copyrev --steps 200 --threads 1 \\
        --variants general mlp mlp_copy_cov --fixed-length 20 --repeat 3 --summary /tmp/peer-bench/results/hf_T1.json
    python scripts/bench_peers.py table /tmp/peer-bench/runs/*_copyrev_L1_T1 [--tag fixed20]

Data: a folder with `{train,valid,test}.{src,tgt}` (whitespace-tokenised lines, e.g. from the peers' `gen_data.py`).
Variants (the peers' model: 1-layer BiLSTM encoder 2×128, LSTM decoder 256, embeddings 128, input feeding, dropout
0.3, decoder initialised from the concatenated final encoder states = `bridge="last"`; Adam 1e-3 constant, grad-norm
clip 5, batches of 64 sentences; our Adam is transformers' default optimizer, torch's fused AdamW, with weight decay
0): `general` (Luong general; onmt lstm_general, joey lstm_luong), `mlp` (Bahdanau; onmt lstm_mlp, joey
lstm_bahdanau), `mlp_copy_cov` (+ pointer-generator copy with the extended vocabulary + coverage;
onmt lstm_mlp_copy_cov), and `general_copy`, `general_cov`, `mlp_copy`, `mlp_cov` (onmt lstm_<same>).

Metrics (as the peers define them, see their README): train throughput = non-padding target tokens including EOS
(`labels != -100`) per second over the steps after `--warmup` (default min(20, steps/10)), timed at the end of each
optimisation step (`TrainerCallback.on_step_end`); decode throughput = test sentences per second of the decode loop
only (model loading excluded), beam 5, batches of 30 sentences in file order, no length penalty
(`length_penalty=0.0`: raw sum of log-probabilities, onmt `-length_penalty none`), at most
`min(250, 2 × longest test source + 10)` new tokens; BLEU/chrF (sacrebleu defaults, 13a) and exact match on the
whitespace-joined tokens; peak RSS of the training process and of the (separate) decoding process, taken before
scoring (the peers score in another process). `suite --hf-venv DIR` runs our side in DIR's interpreter: a venv with
the package and its dependencies only, as the peers have theirs (transformers imports what it finds installed).

Differences from the peers that the numbers carry:
- beam search stopping: onmt stops a sentence as soon as its top beam ends with EOS and drops finished sentences from
  the batch; transformers' default (`early_stopping=False`, kept here, `--early-stopping` to change) keeps searching
  until `num_beams` hypotheses have finished and none of the running beams can beat them, and keeps every sentence of
  the batch in the search until the whole batch is done. With no length penalty both return the best-scoring
  hypothesis the beam found, but ours runs more decoder steps. `--fixed-length L` (every output exactly L tokens,
  EOS switched off in the generation config as in scripts/benchmark.py, and suppressed) compares decode speed
  without this.
- one shared vocabulary (tokens seen >= --min-freq times on the source side or on the target side), where onmt and
  joey have one per side (onmt's copy variants share theirs too); sources end with `</s>` (the package's tokenizer
  convention), which onmt's do not; the output layer is tied to the embeddings (our default), onmt's is not.
- batches: `train_sampling_strategy="group_by_length"` (transformers' LengthGroupedSampler, the counterpart of onmt's
  length-sorted buckets) cuts each mega-batch of 50 batches by length; `RNNSeq2SeqTrainer` hands them out in random
  order, the one with the longest example first. (transformers' own order, longest first in every mega-batch, made a
  30-step run see 1202 target tokens per step against onmt's 929.) Use >= 200 steps for throughput figures and check
  `train.tgt_tokens_per_step`.
- the optimizer: transformers' default `optim="adamw_torch_fused"` (torch's fused AdamW kernel; with weight decay 0
  the same update as Adam), where onmt steps torch's Adam one parameter at a time: 1.3 against 5.4 ms per step for
  this model's 1.2 M parameters.
- `--repeat R` decodes R times in the same process (the fastest counts; the first, cold, one is kept as
  `decode_wall_s_first`), where the peers start a fresh process per repeat.
"""

import argparse
import collections
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time

_PROCESS_START = time.perf_counter()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_RUNS = os.environ.get("PEER_BENCH_RUNS", "/tmp/peer-bench/runs")
DEFAULT_PEERS = os.path.normpath(os.path.join(REPO, "..", "shared", "bench", "peers"))

# Our variants: RNNSeq2SeqConfig fields on top of COMMON, and the peers' variant of the same model.
VARIANTS = {
    "general": dict(attention_type="general"),
    "mlp": dict(attention_type="additive"),
    "general_copy": dict(attention_type="general", use_copy=True, copy_extended_vocab=True),
    "general_cov": dict(attention_type="general", use_coverage=True),
    "mlp_copy": dict(attention_type="additive", use_copy=True, copy_extended_vocab=True),
    "mlp_cov": dict(attention_type="additive", use_coverage=True),
    "mlp_copy_cov": dict(attention_type="additive", use_copy=True, copy_extended_vocab=True, use_coverage=True),
}
PEER_VARIANTS = {
    "onmt": {variant: f"lstm_{variant}" for variant in VARIANTS},
    "joey": {"general": "lstm_luong", "mlp": "lstm_bahdanau"},
}
RECORDED_CONFIG = (
    "attention_type",
    "use_copy",
    "copy_extended_vocab",
    "use_coverage",
    "bridge",
    "tie_word_embeddings",
    "share_encoder_decoder_embeddings",
    "dropout",
    "input_feeding",
    "embedding_size",
    "hidden_size",
)
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]  # ids 0-3: tokenization_rnn_seq2seq.SPECIAL_TOKENS, the config's ids


# ----------------------------------------------------------------------------------------------------------------------
# helpers (no torch here: thread settings must come before torch is imported)
# ----------------------------------------------------------------------------------------------------------------------


def set_thread_env(threads: int) -> None:
    """What the peers' harness sets for its child processes, plus the `tokenizers` (Rust/rayon) pool."""
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[key] = str(threads)
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if threads > 1 else "false"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ["PYTHONUNBUFFERED"] = "1"


def clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def process_stats() -> dict:
    """This process's figures in the keys of the peers' `/usr/bin/time -v` parsing (`ru_maxrss` is in KB on Linux)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.perf_counter() - _PROCESS_START
    return {
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "user_s": round(usage.ru_utime, 2),
        "sys_s": round(usage.ru_stime, 2),
        "cpu_percent": round(100 * (usage.ru_utime + usage.ru_stime) / wall) if wall > 0 else 0,
        "wall_s": round(wall, 2),
        "source": "getrusage(RUSAGE_SELF), wall from the script's start (interpreter start-up not included)",
    }


def read_lines(path: str, limit: int = 0) -> list[str]:
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f]
    return lines[:limit] if limit else lines


def train_stats(metrics: dict, warmup: int | None) -> dict:
    """Throughput from per-step [wall, cpu, tgt_tokens, sents, src_tokens] records: the peers' `train_stats`."""
    steps = metrics["steps"]
    n = len(steps)
    if n < 2:
        return {"steps_done": n}
    w = warmup if warmup is not None else max(1, min(20, n // 10))
    w = min(max(1, w), n - 1)
    win = steps[w:]
    tgt = sum(s[2] for s in win)
    src = sum(s[4] for s in win)
    sents = sum(s[3] for s in win)
    dwall = steps[-1][0] - steps[w - 1][0]
    dcpu = steps[-1][1] - steps[w - 1][1]
    durs = [steps[i][0] - steps[i - 1][0] for i in range(w, n)]
    cdurs = [steps[i][1] - steps[i - 1][1] for i in range(w, n)]
    med = statistics.median(durs)
    cmed = statistics.median(cdurs)
    mean_tgt = tgt / len(win)
    return {
        "steps_done": n,
        "warmup_steps_excluded": w,
        "window_steps": len(win),
        "tgt_tokens_window": tgt,
        "tgt_tokens_per_step": round(mean_tgt, 1),
        "src_tokens_per_step": round(src / len(win), 1),
        "tgt_tok_per_s": round(tgt / dwall, 1),
        "src_tok_per_s": round(src / dwall, 1),
        "sents_per_s": round(sents / dwall, 2),
        "tgt_tok_per_cpu_s": round(tgt / dcpu, 1) if dcpu > 0 else None,
        "step_ms_median": round(med * 1000, 1),
        "step_ms_mean": round(dwall / len(win) * 1000, 1),
        "step_cpu_ms_median": round(cmed * 1000, 1),
        "tgt_tok_per_s_median_step": round(mean_tgt / med, 1) if med > 0 else None,
        "startup_to_first_step_s": round(steps[0][0] - metrics["t0"][0], 2),
        "cpu_util_in_window": round(dcpu / dwall, 2) if dwall > 0 else None,
    }


def score(ref_path: str, hyp_path: str) -> dict:
    """The peers' scripts/score.py: sacrebleu BLEU (13a) and chrF on whitespace-joined tokens, exact match."""
    import sacrebleu

    with open(ref_path, encoding="utf-8") as f:
        refs = [" ".join(line.split()) for line in f]
    with open(hyp_path, encoding="utf-8") as f:
        hyps = [" ".join(line.split()) for line in f]
    out = {"n_ref": len(refs), "n_hyp": len(hyps)}
    if len(hyps) != len(refs):
        out["error"] = "line count mismatch"
        hyps = (hyps + [""] * len(refs))[: len(refs)]
    bleu = sacrebleu.metrics.BLEU()
    b = bleu.corpus_score(hyps, [refs])
    c = sacrebleu.metrics.CHRF().corpus_score(hyps, [refs])
    out.update(
        bleu=round(b.score, 2),
        bleu_signature=str(bleu.get_signature()),
        chrf=round(c.score, 2),
        exact_match=round(sum(h == r for h, r in zip(hyps, refs, strict=True)) / max(1, len(refs)), 4),
        hyp_tokens=sum(len(h.split()) for h in hyps),
        ref_tokens=sum(len(r.split()) for r in refs),
        sacrebleu=sacrebleu.__version__,
    )
    return out


def build_vocab(src_lines: list[str], tgt_lines: list[str], min_freq: int) -> tuple[dict[str, int], dict]:
    """The peers' rule on each side (whitespace tokens seen >= min_freq times), one shared vocabulary: the union of
    both sides, after the four special tokens; most frequent first (summed over the sides), ties by spelling."""
    src_counts, tgt_counts = collections.Counter(), collections.Counter()
    for line in src_lines:
        src_counts.update(line.split())
    for line in tgt_lines:
        tgt_counts.update(line.split())
    src_kept = {t for t, c in src_counts.items() if c >= min_freq}
    tgt_kept = {t for t, c in tgt_counts.items() if c >= min_freq}
    kept = (src_kept | tgt_kept) - set(SPECIALS)
    order = sorted(kept, key=lambda t: (-(src_counts[t] + tgt_counts[t]), t))
    vocab = {token: i for i, token in enumerate([*SPECIALS, *order])}
    return vocab, {"src_side_types": len(src_kept), "tgt_side_types": len(tgt_kept), "shared": len(vocab)}


def make_tokenizer(vocab: dict[str, int]):
    """Word level on whitespace (not `Whitespace`, which would split `<copy>`), `</s>` appended like train_tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from hf_rnn_seq2seq.tokenization_rnn_seq2seq import SPECIAL_TOKENS

    for position, token in enumerate(SPECIALS):
        if vocab[token] != position or list(SPECIAL_TOKENS.values())[position] != token:
            raise RuntimeError(f"special token {token} must have id {position} (SPECIAL_TOKENS: {SPECIAL_TOKENS})")
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    eos = SPECIAL_TOKENS["eos_token"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {eos}", pair=f"$A {eos} $B {eos}", special_tokens=[(eos, vocab[eos])]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)


def run_name(variant: str, data: str, layers: int, threads: int) -> str:
    return f"hf_{variant}_{os.path.basename(os.path.normpath(data))}_L{layers}_T{threads}"


# ----------------------------------------------------------------------------------------------------------------------
# train
# ----------------------------------------------------------------------------------------------------------------------


def cmd_train(args) -> str:
    set_thread_env(args.threads)
    for split in ("train", "valid", "test"):
        for side in ("src", "tgt"):
            if not os.path.exists(os.path.join(args.data, f"{split}.{side}")):
                sys.exit(f"missing {args.data}/{split}.{side} (run the peers' gen_data.py)")
    task = os.path.basename(os.path.normpath(args.data))
    name = args.name or run_name(args.variant, args.data, args.layers, args.threads)
    run = os.path.abspath(args.out or os.path.join(DEFAULT_RUNS, name))
    if os.path.exists(run):
        shutil.rmtree(run)
    os.makedirs(run)
    result = {
        "name": name,
        "system": "hf",
        "variant": args.variant,
        "data": os.path.abspath(args.data),
        "task": task,
        "threads": args.threads,
        "layers": args.layers,
        "hidden": args.hidden,
        "emb": args.emb,
        "batch": args.batch,
        "steps": args.steps,
        "loadavg_before": loadavg(),
    }

    import_start = time.perf_counter()
    import torch

    torch.set_num_threads(args.threads)
    import datasets
    import transformers
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainingArguments, TrainerCallback

    import hf_rnn_seq2seq
    from hf_rnn_seq2seq import (
        DataCollatorForCopySeq2Seq,
        RNNSeq2SeqConfig,
        RNNSeq2SeqForConditionalGeneration,
        RNNSeq2SeqTrainer,
        prepare_copy_inputs,
    )

    transformers.utils.logging.set_verbosity_warning()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    import_wall_s = time.perf_counter() - import_start

    # t0: the peers take it after importing torch and their framework, right before the framework's entry point
    # (onmt's vocabulary comes from a separate build_vocab process; ours is built below, inside the timed start-up).
    t0 = clock()
    rec = {"system": "hf", "version": f"transformers {transformers.__version__}, hf_rnn_seq2seq "
           f"{hf_rnn_seq2seq.__version__}", "torch": torch.__version__, "threads": torch.get_num_threads(),
           "cmd": "train", "steps": [], "t0": list(t0), "import_wall_s": round(import_wall_s, 2)}  # fmt: skip

    src = read_lines(os.path.join(args.data, "train.src"))
    tgt = read_lines(os.path.join(args.data, "train.tgt"))
    if len(src) != len(tgt):
        sys.exit(f"train.src has {len(src)} lines, train.tgt {len(tgt)}")
    pairs = [(s, t) for s, t in zip(src, tgt, strict=True) if s.split() and t.split()]
    src, tgt = [p[0] for p in pairs], [p[1] for p in pairs]
    vocab, vocab_info = build_vocab(src, tgt, args.min_freq)
    tokenizer = make_tokenizer(vocab)

    config = RNNSeq2SeqConfig(
        vocab_size=len(vocab),
        embedding_size=args.emb,
        hidden_size=args.hidden,
        encoder_layers=args.layers,
        decoder_layers=args.layers,
        cell_type="lstm",
        bidirectional_encoder=True,
        dropout=0.3,
        input_feeding=True,
        bridge="last",
        **VARIANTS[args.variant],
    )
    torch.manual_seed(args.seed)
    model = RNNSeq2SeqForConditionalGeneration(config)
    extended = config.use_copy and config.copy_extended_vocab

    def preprocess(batch):
        if extended:
            features = prepare_copy_inputs(tokenizer, config, batch["src"], batch["tgt"], truncation=False)
            features.pop("source_oovs")
        else:
            features = tokenizer(batch["src"])
            features["labels"] = tokenizer(text_target=batch["tgt"])["input_ids"]
        # (no "length" column: transformers 5 drops the columns forward() does not take before it builds the
        # length-grouped sampler, which then measures the source lengths itself, once, before the first step)
        return dict(features)

    train_dataset = datasets.Dataset.from_dict({"src": src, "tgt": tgt}).map(
        preprocess, batched=True, remove_columns=["src", "tgt"]
    )

    class CountingCollator:
        """The Trainer's collator, remembering each batch's sizes (first in, first out: the data loader may make a
        batch or two ahead of the optimisation step that uses it)."""

        def __init__(self, collator):
            self.collator, self.made = collator, collections.deque()

        def __call__(self, features):
            batch = self.collator(features)
            self.made.append(
                (
                    int((batch["labels"] != -100).sum()),  # target tokens incl. EOS (no BOS in labels)
                    int(batch["input_ids"].shape[0]),
                    int(batch["attention_mask"].sum()),  # source tokens incl. our appended </s>
                )
            )
            return batch

    collator = CountingCollator(
        (DataCollatorForCopySeq2Seq if extended else DataCollatorForSeq2Seq)(tokenizer, model=model)
    )

    class StepTimer(TrainerCallback):
        def on_step_end(self, args_, state, control, **kwargs):
            wall, cpu = clock()
            tgt_tokens, sents, src_tokens = collator.made.popleft()
            rec["steps"].append([wall, cpu, tgt_tokens, sents, src_tokens])

    training_args = Seq2SeqTrainingArguments(
        output_dir=os.path.join(run, "trainer"),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch,
        learning_rate=1e-3,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=5.0,
        optim="adamw_torch_fused",  # transformers' default with torch >= 2.8
        train_sampling_strategy=args.sampling,  # transformers 5 (4.x: group_by_length=True)
        dataloader_num_workers=args.num_workers,
        report_to=[],
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        seed=args.seed,
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = RNNSeq2SeqTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[StepTimer()],
    )
    trainer.train()
    t1 = clock()
    rec["main_wall_s"], rec["main_cpu_s"] = t1[0] - t0[0], t1[1] - t0[1]

    checkpoint = os.path.join(run, "model")
    model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    shutil.rmtree(os.path.join(run, "trainer"), ignore_errors=True)
    with open(os.path.join(run, "train_metrics.json"), "w") as f:
        json.dump(rec, f)

    res = train_stats(rec, args.warmup)
    res.update(
        params=sum(p.numel() for p in model.parameters()),
        src_vocab=len(vocab),  # one shared vocabulary
        tgt_vocab=len(vocab),
        vocab=vocab_info,
        process=process_stats(),
        main_wall_s=round(rec["main_wall_s"], 2),
        import_wall_s=rec["import_wall_s"],
        torch=torch.__version__,
        framework_version=rec["version"],
        torch_threads=torch.get_num_threads(),
        checkpoint=checkpoint,
        config={k: getattr(config, k) for k in RECORDED_CONFIG},
    )
    result["train"] = res
    result["loadavg_after"] = loadavg()
    with open(os.path.join(run, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
    keys = ("tgt_tok_per_s", "tgt_tok_per_s_median_step", "tgt_tok_per_cpu_s", "step_ms_median",
            "startup_to_first_step_s")  # fmt: skip
    print(
        json.dumps({"run": run, "train": {k: res.get(k) for k in keys}, "peak_rss_mb": res["process"]["peak_rss_mb"]})
    )
    return run


# ----------------------------------------------------------------------------------------------------------------------
# translate
# ----------------------------------------------------------------------------------------------------------------------


def cmd_translate(args) -> str:
    set_thread_env(args.threads)
    run = os.path.abspath(args.run)
    with open(os.path.join(run, "result.json")) as f:
        result = json.load(f)
    if result.get("system") != "hf":
        sys.exit(f"{run} is a {result.get('system')} run: translate it with the peers' bench.py")
    key = args.tag or "translate"
    tdir = os.path.join(run, key)
    if os.path.exists(tdir):
        shutil.rmtree(tdir)
    os.makedirs(tdir)
    # the test set, truncated to --n-test, copied beside the predictions (as the peers' harness does)
    for side in ("src", "tgt"):
        lines = read_lines(os.path.join(result["data"], f"test.{side}"), args.n_test)
        with open(os.path.join(tdir, f"test.{side}"), "w", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in lines)
    src_path, ref_path, hyp_path = (os.path.join(tdir, name) for name in ("test.src", "test.tgt", "pred.txt"))
    sources = read_lines(src_path)
    n = len(sources)
    max_len = args.max_length or min(250, 2 * max((len(s.split()) for s in sources), default=0) + 10)
    fixed = args.fixed_length or None
    if fixed:
        max_len = fixed

    import torch

    torch.set_num_threads(args.threads)
    import transformers
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    import hf_rnn_seq2seq  # noqa: F401  (registers the Auto classes)
    from hf_rnn_seq2seq import DataCollatorForCopySeq2Seq, batch_decode_with_source_oovs, prepare_copy_inputs

    transformers.utils.logging.set_verbosity_warning()
    transformers.utils.logging.disable_progress_bar()

    checkpoint = result["train"]["checkpoint"]
    w0, c0 = clock()
    quantization = {"cpu_quantization": "dynamic_int8"} if getattr(args, "int8", False) else {}
    model = AutoModelForSeq2SeqLM.from_pretrained(checkpoint, **quantization).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    w1, c1 = clock()
    config = model.config
    extended = config.use_copy and config.copy_extended_vocab
    collator = DataCollatorForCopySeq2Seq(tokenizer) if extended else None
    generate_kwargs = dict(
        num_beams=args.beam,
        num_return_sequences=1,
        length_penalty=0.0,  # raw sum of log-probabilities: onmt -length_penalty none
        early_stopping={"false": False, "true": True, "never": "never"}[args.early_stopping],
        do_sample=False,
        max_new_tokens=max_len,
    )
    if fixed:
        # Exactly `fixed` tokens, EOS never chosen (the peers ban EOS before L and stop at L): EOS is switched off in
        # the generation config, as scripts/benchmark.py does (min_new_tokens would add a logits processor that costs
        # more: 6 % of the decode here, on a 554-word vocabulary), and suppress_tokens keeps the model from writing
        # the EOS id as an ordinary word (about 2 %, within the noise), so every output is L real tokens.
        model.generation_config.eos_token_id = None
        generate_kwargs["suppress_tokens"] = [tokenizer.eos_token_id]
    skip_ids = {tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id}

    def to_text(ids: list[int]) -> str:
        """Word ids -> tokens joined by single spaces; `<unk>` kept, as onmt writes it (tokenizer.decode drops it)."""
        return " ".join(tokenizer.convert_ids_to_tokens([i for i in ids if i not in skip_ids]))

    def decode_all() -> tuple[list[str], int]:
        """Tokenising, generate() and detokenising, batch by batch in file order: the timed part, like onmt's
        `InferenceEnginePY.infer_file` (which reads, numericalises, batches and translates the file)."""
        hyps, steps = [], 0
        for start in range(0, n, args.decode_batch):
            batch = sources[start : start + args.decode_batch]
            if extended:
                features = prepare_copy_inputs(tokenizer, config, batch, truncation=False)
                names = ("input_ids", "attention_mask", "extended_input_ids")
                inputs = collator([{k: features[k][i] for k in names} for i in range(len(batch))])
                inputs = {k: inputs[k] for k in names}
            else:
                encoded = tokenizer(batch, padding=True, return_tensors="pt")
                inputs = {k: encoded[k] for k in ("input_ids", "attention_mask")}
            with torch.inference_mode():
                output = model.generate(**inputs, **generate_kwargs)
            steps += output.shape[1] - 1  # decoder steps of this batch (the first column is the start token)
            if extended:  # copied source OOVs (extended ids) come back as the source words
                texts = batch_decode_with_source_oovs(tokenizer, output, features["source_oovs"], config.vocab_size)
                hyps.extend(" ".join(t.split()) for t in texts)
            else:
                hyps.extend(to_text(row) for row in output.tolist())
        return hyps, steps

    loadavg_before = loadavg()
    runs, hyps, steps = [], None, 0
    for _ in range(max(1, args.repeat)):
        d0 = clock()
        hyps, steps = decode_all()
        d1 = clock()
        runs.append({"decode_wall_s": d1[0] - d0[0], "decode_cpu_s": d1[1] - d0[1]})
    with open(hyp_path, "w", encoding="utf-8") as f:
        f.writelines(h + "\n" for h in hyps)
    best = min(runs, key=lambda r: r["decode_wall_s"])  # best of N: the least disturbed by other processes
    # the decoding process's figures before scoring: the peers score in a separate process (their score.py), whose
    # sacrebleu import is not in their decoding's peak RSS
    process = process_stats()
    scores = score(ref_path, hyp_path)
    dw, dc = best["decode_wall_s"], best["decode_cpu_s"]
    res = {
        "beam": args.beam,
        "batch": args.decode_batch,
        "max_length": max_len,
        "fixed_length": fixed,
        "length_penalty": "none",
        "alpha": 0.0,
        "replace_unk": False,
        "threads": args.threads,
        "n_sents": n,
        "decode_wall_s": round(dw, 3),
        "decode_cpu_s": round(dc, 3),
        "repeats": len(runs),
        "decode_wall_s_runs": [round(r["decode_wall_s"], 3) for r in runs],
        "decode_wall_s_first": round(runs[0]["decode_wall_s"], 3),
        "sents_per_s": round(n / dw, 2),
        "sents_per_cpu_s": round(n / dc, 2) if dc else None,
        "hyp_tok_per_s": round(scores["hyp_tokens"] / dw, 1),
        "decoder_steps": steps,
        "model_load_wall_s": round(w1 - w0, 2),
        "model_load_cpu_s": round(c1 - c0, 2),
        "main_wall_s": round(clock()[0] - w0, 2),
        "process": process,
        "shims": [],
        "generate_kwargs": generate_kwargs | ({"generation_config.eos_token_id": None} if fixed else {}),
        "torch_threads": torch.get_num_threads(),
        "cpu_quantization": model.config.cpu_quantization,
        "timed": "tokenise + generate() + detokenise per batch (onmt's infer_file also reads and batches the file)",
        "loadavg_before": loadavg_before,
        "loadavg_after": loadavg(),
    }
    res.update({k: scores[k] for k in ("bleu", "chrf", "exact_match", "hyp_tokens", "ref_tokens", "bleu_signature")})
    res["tag"] = key
    result[key] = res
    with open(os.path.join(run, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
    keys = ("sents_per_s", "sents_per_cpu_s", "bleu", "exact_match")
    print(json.dumps({"run": run, key: {k: res[k] for k in keys}, "peak_rss_mb": res["process"]["peak_rss_mb"]}))
    return run


# ----------------------------------------------------------------------------------------------------------------------
# table
# ----------------------------------------------------------------------------------------------------------------------


def our_variant(result: dict) -> str | None:
    """The variant name of ours that a run (ours or a peer's) measures."""
    if result.get("system") == "hf":
        return result.get("variant")
    for variant, peer in PEER_VARIANTS.get(result.get("system"), {}).items():
        if peer == result.get("variant"):
            return variant
    return None


def _fmt(value, digits=None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if digits is not None else f"{value:g}"
    return str(value)


def _ratio(a, b) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def cpu_model() -> str:
    """The CPU's name (/proc/cpuinfo on Linux; platform.processor() is often empty there)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def table(results: list[dict], tag: str = "translate", peer_tag: str | None = None) -> str:
    """One row per (task, variant, layers, threads): ours next to each peer, with ratios ours / peer. The decode
    columns read our `tag` decode and the peers' `peer_tag` one (default the same: e.g. our int8 decode
    `translate_int8` against the peers' `translate`)."""
    peer_tag = peer_tag or tag
    rows: dict[tuple, dict[str, dict]] = {}
    for r in results:
        variant = our_variant(r)
        if variant is None:
            continue
        key = (r.get("task"), variant, r.get("layers"), r.get("threads"))
        rows.setdefault(key, {})[r.get("system")] = r  # a later run of the same system replaces an earlier one

    def get(r, *path):
        for part in path:
            if not isinstance(r, dict):
                return None
            r = r.get(part)
        return r

    head = [
        "task", "variant", "T",
        "train tok/s hf", "onmt", "hf/onmt", "joey", "hf/joey",
        "hf/onmt median-step", "hf/onmt tok/CPU-s",
        "decode sent/s hf", "onmt", "hf/onmt", "joey", "hf/joey",
        "BLEU hf", "onmt", "joey",
        "train RSS MB hf", "onmt", "joey", "decode RSS MB hf", "onmt", "joey",
    ]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (task, variant, layers, threads), systems in rows.items():
        hf, onmt, joey = (systems.get(s) for s in ("hf", "onmt", "joey"))
        tok = {s: get(r, "train", "tgt_tok_per_s") for s, r in (("hf", hf), ("onmt", onmt), ("joey", joey))}
        sent = {
            s: get(r, tag if s == "hf" else peer_tag, "sents_per_s")
            for s, r in (("hf", hf), ("onmt", onmt), ("joey", joey))
        }
        cells = [
            task, variant + ("" if layers == 1 else f" L{layers}"), threads,
            _fmt(tok["hf"]), _fmt(tok["onmt"]), _ratio(tok["hf"], tok["onmt"]),
            _fmt(tok["joey"]), _ratio(tok["hf"], tok["joey"]),
            _ratio(get(hf, "train", "tgt_tok_per_s_median_step"), get(onmt, "train", "tgt_tok_per_s_median_step")),
            _ratio(get(hf, "train", "tgt_tok_per_cpu_s"), get(onmt, "train", "tgt_tok_per_cpu_s")),
            _fmt(sent["hf"]), _fmt(sent["onmt"]), _ratio(sent["hf"], sent["onmt"]),
            _fmt(sent["joey"]), _ratio(sent["hf"], sent["joey"]),
            _fmt(get(hf, tag, "bleu")), _fmt(get(onmt, peer_tag, "bleu")), _fmt(get(joey, peer_tag, "bleu")),
            _fmt(get(hf, "train", "process", "peak_rss_mb")), _fmt(get(onmt, "train", "process", "peak_rss_mb")),
            _fmt(get(joey, "train", "process", "peak_rss_mb")),
            _fmt(get(hf, tag, "process", "peak_rss_mb")), _fmt(get(onmt, peer_tag, "process", "peak_rss_mb")),
            _fmt(get(joey, peer_tag, "process", "peak_rss_mb")),
        ]  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    torch_versions = sorted({str(get(r, "train", "torch")) for r in results if get(r, "train", "torch")})
    steps = sorted({r.get("steps") for r in results if r.get("steps")})
    header = (
        f"machine: {cpu_model()}, {os.cpu_count()} CPUs ({platform.platform()}); "
        f"torch {', '.join(torch_versions) or '?'}; train steps {', '.join(map(str, steps)) or '?'}; "
        f"decode results: ours `{tag}`, peers `{peer_tag}`; ratios = ours / peer"
    )
    return header + "\n\n" + "\n".join(lines)


def load_results(runs: list[str]) -> list[dict]:
    results = []
    for run in runs:
        path = os.path.join(run, "result.json")
        if os.path.exists(path):
            with open(path) as f:
                results.append(json.load(f))
        else:
            print(f"(no result.json in {run}, skipped)", file=sys.stderr)
    return results


def cmd_table(args) -> None:
    print(table(load_results(args.runs), args.tag or "translate", args.peer_tag))


# ----------------------------------------------------------------------------------------------------------------------
# suite
# ----------------------------------------------------------------------------------------------------------------------


def _hf_python(venv: str | None) -> str:
    """The interpreter of our side: the virtual environment's, else this one. Peak RSS counts every module a process
    imports, and transformers imports what it finds installed (accelerate, then boto3 if present; scipy; ...): a
    development environment with more packages than the package needs measures more memory than a user's would."""
    if venv is None:
        return sys.executable
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        raise SystemExit(
            f"--hf-venv {venv}: no bin/python there. Make it with `python -m venv {venv} && {venv}/bin/pip install "
            f"torch==2.13.0 && {venv}/bin/pip install -e {REPO}`."
        )
    return python


def _run(cmd: list[str], threads: int, log_path: str | None = None) -> tuple[int, str]:
    """Runs one benchmark process (never two at a time), echoes its output, returns (rc, stdout)."""
    print("$ " + " ".join(cmd), flush=True)
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[key] = str(threads)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    if log_path:
        with open(log_path, "a") as f:
            f.write("$ " + " ".join(cmd) + "\n" + proc.stdout + proc.stderr)
    if proc.stdout.strip():
        print(proc.stdout.rstrip(), flush=True)
    if proc.returncode != 0:
        print(f"(failed, rc={proc.returncode})\n{proc.stderr[-3000:]}", flush=True)
    return proc.returncode, proc.stdout


def _json_line(stdout: str, key: str = "run") -> dict | None:
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if key in obj:
                return obj
    return None


def available_peers(args) -> list[str]:
    peers = [s for s in args.systems if s != "hf"]
    if not peers:
        return []
    bench = os.path.join(args.peers, "bench.py")
    if not os.path.exists(bench):
        print(f"peers skipped: {bench} not found (--peers: the peer harness folder)", flush=True)
        return []
    ok = []
    for system in peers:
        venv = args.onmt_venv if system == "onmt" else args.joey_venv
        if os.path.exists(os.path.join(venv, "bin", "python")):
            ok.append(system)
        else:
            print(f"{system} skipped: {venv}/bin/python not found (run {args.peers}/setup_envs.sh)", flush=True)
    return ok


def cmd_suite(args) -> None:
    peers = available_peers(args)
    ours = "hf" in args.systems
    hf_python = _hf_python(args.hf_venv) if ours else None  # checked before the peers train, not after
    bench = os.path.join(args.peers, "bench.py")
    task = os.path.basename(os.path.normpath(args.data))
    fixed_tag = args.tag or (f"fixed{args.fixed_length}" if args.fixed_length else None)
    common_train = ["--data", args.data, "--steps", str(args.steps), "--threads", str(args.threads),
                    "--seed", str(args.seed), "--min-freq", str(args.min_freq), "--batch", str(args.batch)]  # fmt: skip
    if args.warmup is not None:
        common_train += ["--warmup", str(args.warmup)]
    decodes = [[]] + ([["--fixed-length", str(args.fixed_length), "--tag", fixed_tag]] if args.fixed_length else [])
    common_translate = ["--threads", str(args.threads), "--beam", str(args.beam), "--repeat", str(args.repeat)]
    if args.n_test:
        common_translate += ["--n-test", str(args.n_test)]
    runs = []
    for variant in args.variants:
        for system in peers:
            peer_variant = PEER_VARIANTS[system].get(variant)
            if peer_variant is None:
                print(f"== {system}: no equivalent of {variant}, skipped", flush=True)
                continue
            venv_args = ["--onmt-venv", args.onmt_venv, "--joey-venv", args.joey_venv]
            print(f"== train {system} {peer_variant}", flush=True)
            rc, out = _run(
                ["python3", bench, *venv_args, "train", "--system", system, "--variant", peer_variant, *common_train],
                args.threads,
            )
            found = _json_line(out)
            if rc != 0 or not found:
                continue
            run = found["run"]
            for extra in decodes:
                print(f"== translate {system} {peer_variant} {' '.join(extra)}", flush=True)
                _run(
                    ["python3", bench, *venv_args, "translate", "--run", run, *common_translate, *extra], args.threads
                )
            runs.append(run)
        if ours:
            print(f"== train hf {variant}", flush=True)
            name = run_name(variant, args.data, 1, args.threads)
            run = os.path.join(DEFAULT_RUNS, name)
            me = [hf_python, os.path.abspath(__file__)]
            train = [*me, "train", "--variant", variant, "--out", run, *common_train, "--sampling", args.sampling]
            rc, out = _run(train, args.threads)
            if rc != 0:
                continue
            for extra in decodes:
                print(f"== translate hf {variant} {' '.join(extra)}", flush=True)
                _run(
                    [
                        *me,
                        "translate",
                        "--run",
                        run,
                        *common_translate,
                        "--early-stopping",
                        args.early_stopping,
                        *extra,
                    ],
                    args.threads,
                )
                if args.int8:
                    tag = (extra[-1] if extra else "translate") + "_int8"
                    print(f"== translate hf {variant} {' '.join(extra)} int8", flush=True)
                    without_tag = extra[:-2] if extra else []
                    _run([*me, "translate", "--run", run, *common_translate, "--early-stopping", args.early_stopping,
                          *without_tag, "--int8", "--tag", tag], args.threads)  # fmt: skip
            runs.append(run)
    results = load_results(runs)
    tags = [("translate", None)] + ([(fixed_tag, None)] if fixed_tag else [])
    if args.int8:
        tags += [(f"{tag}_int8", tag) for tag, _ in list(tags)]
    tables = [table(results, tag, peer_tag) for tag, peer_tag in tags]
    md = f"# {task}, T={args.threads}, {args.steps} steps\n\n" + "\n\n".join(tables)
    print()
    print(md)
    if args.summary:
        os.makedirs(os.path.dirname(os.path.abspath(args.summary)), exist_ok=True)
        with open(args.summary, "w") as f:
            json.dump(results, f, indent=2)
        with open(os.path.splitext(args.summary)[0] + ".md", "w") as f:
            f.write(md + "\n")


# ----------------------------------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------------------------------


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="folder with {train,valid,test}.{src,tgt}")
    p.add_argument("--steps", type=int, default=200, help="optimisation steps (max_steps)")
    p.add_argument("--threads", type=int, default=1, help="torch/OMP/MKL threads")
    p.add_argument("--warmup", type=int, default=None, help="steps excluded from throughput (default min(20, n/10))")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--min-freq", type=int, default=2, help="vocabulary: tokens seen this often on either side")
    p.add_argument("--batch", type=int, default=64, help="training batch, sentences")
    p.add_argument(
        "--sampling",
        choices=["group_by_length", "random"],
        default="group_by_length",
        help="ours: transformers' train_sampling_strategy. group_by_length (the default, the counterpart of onmt's "
        "length-sorted buckets: least padding; RNNSeq2SeqTrainer hands its batches out in random order) or random",
    )


def add_translate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--n-test", type=int, default=0, help="translate the first N test lines (0 = all)")
    p.add_argument("--fixed-length", type=int, default=0, help="every output exactly L tokens (decode speed alone)")
    p.add_argument("--repeat", type=int, default=1, help="decode R times, keep the fastest (all times kept)")
    p.add_argument(
        "--int8", action="store_true", help="ours only: CPU int8 inference (`cpu_quantization='dynamic_int8'`)"
    )
    p.add_argument(
        "--early-stopping",
        choices=["false", "true", "never"],
        default="false",
        help="generate()'s early_stopping (default transformers' own, False; see the module docstring)",
    )


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train one variant, write RUN/result.json and RUN/model")
    t.add_argument("--variant", required=True, choices=sorted(VARIANTS))
    t.add_argument("--out", help=f"run folder (default {DEFAULT_RUNS}/hf_<variant>_<task>_L1_T<threads>)")
    t.add_argument("--name", help="run name (default hf_<variant>_<task>_L1_T<threads>)")
    t.add_argument("--layers", type=int, default=1, help="encoder and decoder layers")
    t.add_argument("--hidden", type=int, default=256, help="decoder hidden = encoder output (2 directions)")
    t.add_argument("--emb", type=int, default=128)
    t.add_argument("--num-workers", type=int, default=0, help="dataloader_num_workers")
    add_train_args(t)

    tr = sub.add_parser("translate", help="decode the test set with a trained run (in this, fresh, process)")
    tr.add_argument("--run", required=True)
    tr.add_argument("--threads", type=int, default=1, help="torch/OMP/MKL threads")
    tr.add_argument("--decode-batch", type=int, default=30, help="sentences per generate() call")
    tr.add_argument("--max-length", type=int, default=0, help="max new tokens (0 = 2 × longest test source + 10)")
    tr.add_argument("--tag", default="translate", help="result key and sub-folder of this decode")
    add_translate_args(tr)

    s = sub.add_parser("suite", help="peers then ours, per variant, back to back; then the table")
    s.add_argument("--variants", nargs="+", default=["general", "mlp", "mlp_copy_cov"], choices=sorted(VARIANTS))
    s.add_argument("--systems", nargs="+", default=["hf", "onmt", "joey"], choices=["hf", "onmt", "joey"])
    s.add_argument("--peers", default=DEFAULT_PEERS, help="the peer harness folder (bench.py)")
    s.add_argument("--onmt-venv", default=os.environ.get("ONMT_VENV", "/tmp/venv-onmt"))
    s.add_argument("--joey-venv", default=os.environ.get("JOEY_VENV", "/tmp/venv-joey"))
    s.add_argument(
        "--hf-venv",
        default=os.environ.get("HF_VENV"),
        help="run our side in this virtual environment (the package and its dependencies only, as the peers run in "
        "theirs); default: this interpreter",
    )
    s.add_argument("--tag", help="tag of the --fixed-length decodes (default fixed<L>)")
    s.add_argument("--summary", help="write all results here (JSON) and the table beside it (.md)")
    add_train_args(s)
    add_translate_args(s)

    tb = sub.add_parser("table", help="the comparison table from existing run folders (ours and the peers')")
    tb.add_argument("runs", nargs="+")
    tb.add_argument("--tag", default="translate", help="which decode result to show")
    tb.add_argument("--peer-tag", help="the peers' decode result to compare with (default: --tag)")

    args = p.parse_args(argv)
    if args.cmd == "train":
        cmd_train(args)
    elif args.cmd == "translate":
        cmd_translate(args)
    elif args.cmd == "suite":
        cmd_suite(args)
    else:
        cmd_table(args)


if __name__ == "__main__":
    main()
