"""Recipes on real corpora: train, evaluate on the validation split, draw attention, write model cards.

The corpora are the JSON Lines folders of `../shared/data` (or any folder with the same layout: `<name>/train.jsonl`
and `<name>/validation.jsonl`); nothing is downloaded and nothing of the data is copied into the repository.

    python scripts/recipes/recipes.py list                                   # every recipe and run, with its budget
    python scripts/recipes/recipes.py run multi30k --data_dir ../shared/data # one recipe (or run names, or "all")
    python scripts/recipes/recipes.py run all --data_dir ../shared/data &    # two workers share the queue: each
    python scripts/recipes/recipes.py run all --data_dir ../shared/data &    #   claims a run before starting it
    python scripts/recipes/recipes.py report                                 # model_cards/*.md and the results table
    python scripts/recipes/recipes.py run multi30k --data_dir D --dry_run    # print the commands only

Each run is `scripts/train.py` with the run's arguments, then `scripts/evaluate_model.py` on the validation file
(beam search, sacreBLEU cased and lowercased, chrF, ROUGE, copy/repetition/OOV statistics as the recipe asks), then
`scripts/translate.py --plot_attention` on one validation sentence. Everything lands in `--output_root/<run>/`
(default `runs/recipes`): the model, `validation/metrics.json`, `validation/predictions.jsonl`, `attention.png`.
A finished run (all its steps done: `recipe.json` lists them) is skipped unless `--force`. A run in progress is
claimed (`.<run>.claimed`, with the worker's host and process id) and skipped by other workers; the claim of a
worker that died is taken over, and a failed run releases its claim.

Every run uses one thread (`OMP_NUM_THREADS=1`): on a 2-core machine two workers side by side train more per hour
than one run on two threads.
"""

import argparse
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent
REPO = SCRIPTS.parent

# ---------------------------------------------------------------------------------------------------------------------
# The corpora: folder, layout arguments, licence and citation (from each folder's README).
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    folder: str
    columns: tuple[str, ...]  # train.py / evaluate_model.py arguments naming the source and target
    title: str
    licence: str
    anchor: str = ""  # published numbers on this data, to read ours against (with what differs)
    limitations: str = ""


CORPORA = {
    "multi30k_de_en": Corpus(
        "multi30k",
        ("--source_lang", "de", "--target_lang", "en"),
        "Multi30k (Elliott et al. 2016), German → English image captions: 29 000 training and 1 014 validation pairs",
        "no licence file; the data is provided for non-commercial research and educational use (Flickr Terms of "
        "Use for the underlying images)",
        "bentrevett/pytorch-seq2seq reaches 28.30 BLEU with a bidirectional-GRU Bahdanau model of 20.5 M "
        "parameters, and 13.76 with a 2-layer LSTM without attention (13.9 M), 10 epochs each. Those are on "
        "test2016, with greedy decoding and BLEU over lowercased spaCy tokens; ours are on the validation split "
        "with beam 5 and sacreBLEU over detokenised text, so compare with our lowercased column and expect a few "
        "points of difference from the split and tokenisation alone.",
        "Trained on image captions only: short descriptions of photographs (people, animals, streets). Other "
        "German (news, dialogue, long sentences) is far outside what it has seen.",
    ),
    "tatoeba_en_zh": Corpus(
        "tatoeba_cmn_eng",
        ("--source_lang", "en", "--target_lang", "zh"),
        "Tatoeba English → Mandarin Chinese (via manythings.org/anki): 27 155 training and 1 000 validation pairs",
        "CC-BY 2.0 (France); attribution per pair: tatoeba.org contributors and manythings.org/anki",
        "No published RNN number on this data was found: the result is its own baseline.",
        "Tatoeba sentences are short, everyday and often several translations of one English sentence; the model "
        "writes simplified or traditional characters as its training pairs did, and long or technical English is "
        "out of its reach.",
    ),
    "scitldr": Corpus(
        "scitldr_abstract",
        ("--text_column", "source", "--summary_column", "target"),
        "SciTLDR (Cachola et al. 2020), paper abstract → one-sentence TL;DR: 1 992 training and 619 validation pairs",
        "Apache-2.0 (allenai/scitldr)",
        limitations="2 000 training abstracts are few for abstractive summaries: the TL;DRs are often generic or "
        "copied from the abstract's first sentences, and may state what the paper does not.",
    ),
    "cnn_dailymail": Corpus(
        "cnn_dailymail_sample",
        ("--text_column", "source", "--summary_column", "target"),
        "a 700-article sample of CNN/DailyMail (Hermann et al. 2015; See et al. 2017), news article → highlights: "
        "700 training and 100 validation pairs",
        "Apache-2.0 for the dataset; the articles remain the copyright of CNN and the Daily Mail: research use only",
        "See et al. 2017 report ROUGE-1/2/L 36.44 / 15.66 / 33.42 (pointer-generator), 39.53 / 17.28 / 36.38 "
        "(+ coverage) and 40.34 / 17.70 / 36.57 (lead-3) on the full CNN/DailyMail test set, the models after "
        "287 000 training articles and days of GPU training. Our lead-3 row, scored by the same script as our models "
        "on these 100 validation articles, calibrates the sample and scorer against their lead-3; a 700-article "
        "sample shows the mechanisms' direction, not those levels.",
        "700 training articles are far too few for fluent abstractive summaries: expect copied sentence fragments, "
        "wrong facts and names from the wrong article. A demonstration of the mechanisms, not a summariser.",
    ),
}

# ---------------------------------------------------------------------------------------------------------------------
# The runs. Model sizes: a bidirectional 1-layer LSTM encoder (2 × 128) and a 1-layer LSTM decoder (256) with
# embeddings of 256 and tied output weights: 3–4 M parameters, about 1 training step per second with batches of 64
# on one CPU thread, so that each recipe fits in well under an hour of a 2-core machine.
# ---------------------------------------------------------------------------------------------------------------------

TRANSLATION_MODEL = [
    "--embedding_size", "256", "--hidden_size", "256", "--encoder_layers", "1", "--decoder_layers", "1",
    "--dropout", "0.3", "--tie_word_embeddings", "true", "--learning_rate", "1e-3", "--per_device_train_batch_size",
    "64", "--logging_steps", "50",
]  # fmt: skip
MULTI30K_MODEL = ["--tokenizer_kind", "bpe", "--tokenizer_vocab_size", "6000", *TRANSLATION_MODEL]
# The ablation's budget: 700 steps of 64 pairs (1.5 epochs), no selection on the validation split during training.
ABLATION_BUDGET = [
    "--max_steps", "700", "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false",
    "--max_eval_samples", "100",
]  # fmt: skip
# The OOV comparison's budget: 5 epochs (2 270 steps), long enough for the copy switch to be learned; no selection.
OOV_BUDGET = ["--num_train_epochs", "5", *ABLATION_BUDGET[2:]]
SUMMARY_MODEL = [
    "--tokenizer_kind", "word", "--tokenizer_vocab_size", "8000", "--lowercase", "true", "--embedding_size", "128",
    "--hidden_size", "256", "--encoder_layers", "1", "--decoder_layers", "1", "--dropout", "0.3",
    "--attention_type", "additive", "--learning_rate", "1e-3", "--per_device_train_batch_size", "32",
    "--logging_steps", "10", "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false",
    "--max_eval_samples", "50",
]  # fmt: skip
POINTER = ["--use_copy", "true", "--copy_extended_vocab", "true"]
# See et al. 2017: coverage is switched on for a short final phase of a trained pointer-generator (their 3 000
# iterations after 230 000); here 2 epochs at half the learning rate, the coverage vector's weight starting at zero.
COVERAGE_PHASE = ["--use_coverage", "true", "--coverage_loss_weight", "1.0", "--learning_rate", "5e-4"]


@dataclass
class Run:
    name: str
    corpus: str
    train: list[str]
    evaluate: list[str] = field(default_factory=lambda: ["--num_beams", "5", "--perplexity"])
    group: str = ""
    init_from: str | None = None  # continue this run's model (its tokenizer too)
    prepare: Callable[["Run", Path, Path], list[str]] | None = None  # extra train.py arguments made before training
    card: str | None = None  # model card file name (model_cards/<card>.md), for the recipes' headline models
    also_evaluate: dict[str, list[str]] = field(default_factory=dict)  # other decodings → validation-<name>/
    caveat: str = ""  # what this model's card must say about it beyond its corpus's limits
    summary: str = ""
    lead: int = 0  # > 0: no model, the lead-N baseline (each source's first N sentences) scored like one


def word2vec_embeddings(run: "Run", data_dir: Path, output_dir: Path) -> list[str]:
    """Pretrained embeddings for the ablation, made locally: the run's BPE tokenizer is trained first (the same one
    every other row trains, deterministically), then gensim's word2vec (skip-gram, 256 dimensions) on the training
    split in those tokens. The vectors file and tokenizer go to the run's folder."""
    from gensim.models import Word2Vec

    from hf_rnn_seq2seq.tasks_rnn_seq2seq import load_text_pairs
    from hf_rnn_seq2seq.tokenization_rnn_seq2seq import train_tokenizer

    corpus = CORPORA[run.corpus]
    language = dict(zip(corpus.columns[::2], corpus.columns[1::2], strict=True))
    raw, source, target = load_text_pairs(
        data_files={"train": str(data_dir / corpus.folder / "train.jsonl")},
        source_lang=language["--source_lang"],
        target_lang=language["--target_lang"],
    )
    texts = [text for column in (source, target) for text in raw["train"][column]]
    tokenizer = train_tokenizer(texts, kind="bpe", vocab_size=6000)
    tokenizer_dir = output_dir / "tokenizer"
    tokenizer.save_pretrained(tokenizer_dir)
    sentences = [tokenizer.tokenize(text) for text in texts]
    vectors = Word2Vec(sentences, vector_size=256, window=5, min_count=1, sg=1, epochs=10, workers=1, seed=1).wv
    path = output_dir / "word2vec-256.txt"
    vectors.save_word2vec_format(str(path), binary=False)
    return ["--tokenizer_name", str(tokenizer_dir), "--pretrained_embeddings", str(path)]


def _runs() -> list[Run]:
    runs = [
        Run(
            "multi30k-de-en",
            "multi30k_de_en",
            [*MULTI30K_MODEL, "--attention_type", "additive", "--num_train_epochs", "8", "--seed", "1"],
            group="multi30k",
            card="multi30k-de-en",
            also_evaluate={"greedy": ["--num_beams", "1"]},  # the published anchor decodes greedily
            summary="bidirectional LSTM + additive (Bahdanau) attention + input feeding, 8 epochs, best epoch by BLEU",
        )
    ]
    # (name, description, arguments, seeds); every row has the bidirectional encoder and input feeding unless it says
    ablation = [
        ("none", "no attention: a fixed context (§5.1), hence no input feeding",
         ["--attention_type", "none", "--input_feeding", "false"], (1, 2)),
        ("dot", "Luong dot", ["--attention_type", "dot"], (1, 2)),
        ("general", "Luong general", ["--attention_type", "general"], (1, 2)),
        ("additive", "Bahdanau additive", ["--attention_type", "additive"], (1, 2)),
        ("additive-unidirectional", "Bahdanau additive, unidirectional encoder (§5.3)",
         ["--attention_type", "additive", "--bidirectional_encoder", "false"], (1,)),
        ("additive-no-input-feeding", "Bahdanau additive, no input feeding",
         ["--attention_type", "additive", "--input_feeding", "false"], (1,)),
        ("additive-word2vec", "Bahdanau additive, embeddings from word2vec on the training split",
         ["--attention_type", "additive"], (1,)),
    ]  # fmt: skip
    second_seeds = []
    for seed_position in (0, 1):
        for name, description, arguments, seeds in ablation:
            if seed_position < len(seeds):
                seed = seeds[seed_position]
                (runs if seed_position == 0 else second_seeds).append(
                    Run(
                        f"ablation-{name}-s{seed}",
                        "multi30k_de_en",
                        MULTI30K_MODEL + arguments + ABLATION_BUDGET + ["--seed", str(seed)],
                        group="ablation",
                        prepare=word2vec_embeddings if name.endswith("word2vec") else None,
                        summary=description,
                    )
                )
    runs.append(
        Run(
            "tatoeba-en-zh",
            "tatoeba_en_zh",
            # the same model, with its own vocabulary: English subwords and Chinese characters
            [
                *TRANSLATION_MODEL,
                "--tokenizer_kind",
                "bpe",
                "--tokenizer_vocab_size",
                "8000",
                "--tokenizer_split_cjk",
                "true",
                "--attention_type",
                "additive",
                "--bleu_tokenize",
                "zh",
                "--num_train_epochs",
                "10",
                "--seed",
                "1",
            ],
            evaluate=["--num_beams", "5", "--bleu_tokenize", "zh", "--perplexity"],
            group="tatoeba-en-zh",
            card="tatoeba-en-zh",
            caveat="Trained while two other runs shared the machine's two cores: its time and tokens/s are about a "
            "third slower than with one neighbour run (as the Multi30k model was timed).",
            summary="English subwords → Chinese characters, bidirectional LSTM + additive attention, 10 epochs, best epoch by BLEU",
        )
    )
    for corpus, short, lengths, epochs, lead in (
        ("scitldr", "scitldr", ["--max_source_length", "256", "--max_target_length", "64"], "12", 1),
        ("cnn_dailymail", "cnndm", ["--max_source_length", "400", "--max_target_length", "100"], "10", 3),
    ):
        evaluate = ["--num_beams", "4", "--copy_statistics", "--max_new_tokens", lengths[-1], "--max_source_length"]
        evaluate.append(lengths[1])  # the sources truncated as in training
        common = SUMMARY_MODEL + lengths + ["--seed", "1"]
        runs += [
            Run(
                f"{short}-lead-{lead}",
                corpus,
                [],
                ["--copy_statistics"],
                group=short,
                lead=lead,
                summary=f"lead-{lead} baseline: the source's first {'sentence' if lead == 1 else f'{lead} sentences'}, no model",
            ),
            Run(
                f"{short}-attention",
                corpus,
                [*common, "--num_train_epochs", epochs],
                evaluate,
                group=short,
                summary="attention only",
            ),
            Run(
                f"{short}-pointer",
                corpus,
                common + POINTER + ["--num_train_epochs", epochs],
                evaluate,
                group=short,
                summary="pointer-generator (extended vocabulary)",
            ),
            Run(
                f"{short}-pointer-coverage",
                corpus,
                common + POINTER + COVERAGE_PHASE + ["--num_train_epochs", "2"],
                evaluate,
                group=short,
                init_from=f"{short}-pointer",
                card=f"{short}-pointer-coverage" if short == "scitldr" else None,  # CNN/DailyMail's: fine-tuned
                summary="pointer-generator, then 2 epochs with coverage",
            ),
        ]
    # 700 articles are too few to learn summaries from scratch (the runs above stay at the unigram distribution):
    # the same three variants once more, fine-tuned from the SciTLDR models (their tokenizer and vocabulary too).
    news = ["--max_source_length", "400", "--max_target_length", "100"]
    evaluate = ["--num_beams", "4", "--copy_statistics", "--max_new_tokens", "100", "--max_source_length", "400"]
    for variant, arguments, init_from, summary in (
        ("attention", ["--num_train_epochs", "4"], "scitldr-attention", "attention only"),
        ("pointer", [*POINTER, "--num_train_epochs", "4"], "scitldr-pointer", "pointer-generator"),
        ("pointer-coverage", [*POINTER, *COVERAGE_PHASE, "--num_train_epochs", "2"], "cnndm-from-scitldr-pointer",
         "pointer-generator, then 2 epochs with coverage"),
    ):  # fmt: skip
        runs.append(
            Run(
                f"cnndm-from-scitldr-{variant}",
                "cnn_dailymail",
                SUMMARY_MODEL + news + arguments + ["--seed", "1"],
                evaluate,
                group="cnndm",
                init_from=init_from,
                card="cnndm-from-scitldr-pointer-coverage" if variant == "pointer-coverage" else None,
                caveat="Not a usable summariser: most of its output words are `<unk>` (see the results). It is "
                "fine-tuned from this repository's SciTLDR model of the same kind (`scitldr-pointer` for the "
                "pointer-generator, then the coverage phase on news), whose vocabulary is SciTLDR's 8 000 lowercased "
                "words: a quarter of the news tokens are out of it, more than copying covers (at most 50 distinct "
                "source OOV words per article). It is published to show what copy and coverage change, against "
                "the lead-3 baseline and the other variants.",
                summary=f"{summary}, fine-tuned from the SciTLDR model"
                + (" (4 epochs)" if variant != "pointer-coverage" else ""),
            )
        )
    oov_model = [*TRANSLATION_MODEL, "--tokenizer_kind", "word", "--tokenizer_vocab_size", "3000"]
    for name, arguments in (("no-copy", []), ("copy", POINTER)):
        runs.append(
            Run(
                f"oov-{name}",
                "multi30k_de_en",
                [*oov_model, "--attention_type", "additive", *arguments, *OOV_BUDGET, "--seed", "1"],
                evaluate=["--num_beams", "5", "--oov_statistics", "--perplexity"],
                group="oov",
                card="multi30k-de-en-word-copy" if arguments else None,
                caveat="Trained for 5 epochs (2 270 steps of 64 pairs) at a fixed budget, without checkpoint selection: "
                "shorter than the headline Multi30k model, and with a word vocabulary of 3 000 most of the caption "
                "words it meets are out of vocabulary (see the results table).",
                summary=f"word vocabulary of 3 000 (shared de+en), {'extended-vocabulary copy' if arguments else 'no copy'}",
            )
        )
    # The queue's order (two workers take runs from its front): every table's rows first, then the second seeds of
    # the main contrast (attention or not), the smallest corpus, and the other second seeds.
    priority = {"multi30k": 0, "ablation": 1, "tatoeba-en-zh": 2, "oov": 3, "scitldr": 4, "cnndm": 6}

    def rank(run: Run) -> int:
        if run in second_seeds:
            return 5 if run.name in ("ablation-none-s2", "ablation-additive-s2") else 7
        return priority[run.group]

    return sorted(runs + second_seeds, key=rank)


RUNS = {run.name: run for run in _runs()}
GROUPS = {run.group for run in RUNS.values()}

# ---------------------------------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------------------------------


def select(names: list[str]) -> list[Run]:
    chosen = []
    for name in names:
        if name == "all":
            chosen += RUNS.values()
        elif name in GROUPS:
            chosen += [run for run in RUNS.values() if run.group == name]
        elif name in RUNS:
            chosen.append(RUNS[name])
        else:
            raise SystemExit(f"error: {name!r} is neither a recipe ({', '.join(sorted(GROUPS))}) nor a run (see list)")
    return list({run.name: run for run in chosen}.values())


def commands(run: Run, data_dir: Path, output_root: Path, extra: list[str]) -> list[list[str]]:
    corpus = CORPORA[run.corpus]
    folder = data_dir / corpus.folder
    output = output_root / run.name
    python = sys.executable
    if run.lead:  # a baseline: scoring only
        validation = ["--test_file", str(folder / "validation.jsonl"), "--lead", str(run.lead), *run.evaluate]
        return [[python, str(SCRIPTS / "evaluate_model.py"), *corpus.columns, *validation, "--output_dir",
                 str(output / "validation")]]  # fmt: skip
    train = [python, str(SCRIPTS / "train.py"), *corpus.columns, "--train_file", str(folder / "train.jsonl")]
    train += ["--validation_file", str(folder / "validation.jsonl"), *run.train, *extra, "--output_dir", str(output)]
    if run.init_from:
        train += ["--model_name_or_path", str(output_root / run.init_from)]
    evaluations = [(output / "validation", run.evaluate)]
    evaluations += [(output / f"validation-{name}", arguments) for name, arguments in run.also_evaluate.items()]
    evaluate = [python, str(SCRIPTS / "evaluate_model.py"), str(output), *corpus.columns]
    evaluate += ["--test_file", str(folder / "validation.jsonl")]
    return [train] + [[*evaluate, *arguments, "--output_dir", str(where)] for where, arguments in evaluations]


def attention_example(run: Run, data_dir: Path) -> str:
    """The shortest of the first 20 validation sources (a readable heatmap)."""
    corpus = CORPORA[run.corpus]
    with open(data_dir / corpus.folder / "validation.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for _, line in zip(range(20), f, strict=False)]
    key = dict(zip(corpus.columns[::2], corpus.columns[1::2], strict=True))
    if "--source_lang" in key:
        sources = [row["translation"][key["--source_lang"]] for row in rows]
    else:
        sources = [row[key["--text_column"]] for row in rows]
    return min(sources, key=len)


def execute(
    run: Run, data_dir: Path, output_root: Path, dry_run: bool, force: bool, evaluate_only: bool = False
) -> None:
    output = output_root / run.name
    if evaluate_only and not run.lead and not (output / "config.json").is_file():
        print(f"[{run.name}] has no trained model to evaluate; skipped")
        return
    if (output / "recipe.json").is_file() and not force:
        print(f"[{run.name}] done already (--force to run it again)")
        return
    output_root.mkdir(parents=True, exist_ok=True)
    claim = output_root / f".{run.name}.claimed"
    if not dry_run and not evaluate_only:
        owner = take_claim(claim)
        if owner and not force:
            print(f"[{run.name}] claimed by {owner} ({claim}); skipped")
            return
        if owner:
            _release(claim)
            take_claim(claim)
    try:
        _execute_claimed(run, data_dir, output_root, dry_run, evaluate_only)
    finally:  # done or failed, the run is free again: `recipe.json` is what marks it done
        if not dry_run and not evaluate_only:
            _release(claim)


def take_claim(claim: Path) -> str:
    """Claim a run for this worker: "" if it is ours now, else who holds it ("worker 123 on host").

    The claim is a directory (its `mkdir` is atomic: two workers on one queue never take the same run) holding the
    owner's host and process id. A claim left by a worker that no longer runs on this host (killed, machine
    restarted) is taken over: it is renamed away first, an atomic step that only one of several workers wins.
    """
    me = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            claim.mkdir()
        except FileExistsError:
            owner_file = claim / "owner"
            owner = owner_file.read_text().split() if owner_file.is_file() else []
            if len(owner) == 2 and owner[0] == socket.gethostname() and not _alive(int(owner[1])):
                stale = claim.with_name(f"{claim.name}.stale-{os.getpid()}")
                try:
                    claim.rename(stale)
                except OSError:  # another worker took it over first
                    return "another worker"
                print(f"{claim}: its worker (process {owner[1]}) is gone; taking the run over")
                shutil.rmtree(stale)
                continue
            return f"worker {owner[1]} on {owner[0]}" if len(owner) == 2 else "another worker"
        (claim / "owner").write_text(me + "\n")
        return ""
    return "another worker"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _release(claim: Path) -> None:
    shutil.rmtree(claim, ignore_errors=True)


def _execute_claimed(run: Run, data_dir: Path, output_root: Path, dry_run: bool, evaluate_only: bool) -> None:
    output = output_root / run.name
    for split in ("train", "validation"):
        if not (data_dir / CORPORA[run.corpus].folder / f"{split}.jsonl").is_file():
            raise SystemExit(
                f"[{run.name}] {data_dir / CORPORA[run.corpus].folder / f'{split}.jsonl'} does not exist: "
                "--data_dir must be the folder holding the corpora (../shared/data)"
            )
    if run.init_from and not (output_root / run.init_from / "recipe.json").is_file() and not dry_run:
        print(f"[{run.name}] waits for {run.init_from}; skipped this time")
        return
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    extra = []
    if run.prepare and not dry_run and not evaluate_only:
        output.mkdir(parents=True, exist_ok=True)
        extra = run.prepare(run, data_dir, output)
    steps = commands(run, data_dir, output_root, extra)
    if not run.lead and _option(run.train, "--attention_type") != "none":  # (a fixed context has no alignment)
        steps.append(
            [
                sys.executable,
                str(SCRIPTS / "translate.py"),
                str(output),
                attention_example(run, data_dir),
                "--num_beams",
                "5",
                "--plot_attention",
                str(output / "attention.png"),
            ]
        )
    for step in steps[1:] if evaluate_only and not run.lead else steps:
        print(f"[{run.name}] $ {' '.join(step)}", flush=True)
        if dry_run:
            continue
        output.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with open(output / "recipe.log", "a", encoding="utf-8") as log:
            result = subprocess.run(step, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        if result.returncode:
            raise SystemExit(f"[{run.name}] failed (exit {result.returncode}); see {output / 'recipe.log'}")
        print(f"[{run.name}]   done in {time.perf_counter() - start:.0f} s", flush=True)
    if not dry_run:
        (output / "recipe.json").write_text(json.dumps({"run": run.name, "commands": steps}, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------------------------------


def collect(run: Run, output_root: Path) -> dict | None:
    """The run's numbers: validation metrics, training time and speed, parameters; None if it has not finished."""
    output = output_root / run.name
    metrics_file = output / "validation" / "metrics.json"
    if not (output / "recipe.json").is_file():
        return None
    metrics = json.loads(metrics_file.read_text())
    if run.lead:
        return {"metrics": metrics}
    results = json.loads((output / "all_results.json").read_text())
    config = json.loads((output / "config.json").read_text())
    state = json.loads((output / "trainer_state.json").read_text())
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(output)
    with open(output / "recipe.json", encoding="utf-8") as f:
        train_command = json.load(f)["commands"][0]
    target_tokens = _mean_target_tokens(train_command, tokenizer)
    return {
        "metrics": metrics,
        "train_runtime": results.get("train_runtime"),
        "train_samples_per_second": results.get("train_samples_per_second"),
        "target_tokens_per_second": (results.get("train_samples_per_second") or 0) * target_tokens,
        "steps": state.get("global_step"),
        "epochs": state.get("epoch"),
        "parameters": _parameters(output),
        "vocab_size": config["vocab_size"],
        "config": config,
        "command": train_command,
    }


def _parameters(output: Path) -> int:
    """Parameters as saved (tied matrices once), read from the safetensors header without loading the model."""
    from safetensors import safe_open

    with safe_open(output / "model.safetensors", framework="pt") as f:
        return sum(math.prod(f.get_slice(name).get_shape()) for name in f.keys())


def _option(command: list[str], name: str, default: str | None = None) -> str | None:
    return command[command.index(name) + 1] if name in command else default


def _mean_target_tokens(command: list[str], tokenizer) -> float:
    """Mean target length in tokens (with the end-of-sentence token, after truncation) of the training file."""
    target_lang, column = _option(command, "--target_lang"), _option(command, "--summary_column")
    limit = int(_option(command, "--max_target_length", "128"))
    with open(_option(command, "--train_file"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    targets = [row["translation"][target_lang] if target_lang else row[column] for row in rows]
    lengths = [len(ids) for ids in tokenizer(text_target=targets, max_length=limit, truncation=True)["input_ids"]]
    return sum(lengths) / len(lengths)


HARDWARE = "one thread of a 2-vCPU x86-64 cloud machine (torch 2.13 CPU build)"


def _f(value, digits: int = 1, scale: float = 1.0) -> str:
    return "–" if value is None else f"{value * scale:.{digits}f}"


def _seeds(values: list[float], digits: int = 1) -> str:
    """Mean over seeds, with each seed's value when there are several."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ({' / '.join(f'{v:.{digits}f}' for v in values)})"


def _earlier(run: Run) -> list[Run]:
    """The runs that `run` continues (its `init_from`, and theirs), first first."""
    return [*_earlier(RUNS[run.init_from]), RUNS[run.init_from]] if run.init_from else []


def _time(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds / 60:.0f} min"


def write_card(run: Run, result: dict, output_root: Path, cards_dir: Path) -> Path:
    """model_cards/<card>.md: the package's model card plus data, results on the validation split, samples and the
    attention heatmap (copied to model_cards/images/)."""
    from transformers import AutoModelForSeq2SeqLM

    import hf_rnn_seq2seq  # noqa: F401
    from hf_rnn_seq2seq.modelcard_rnn_seq2seq import build_model_card

    output = output_root / run.name
    corpus = CORPORA[run.corpus]
    model = AutoModelForSeq2SeqLM.from_pretrained(output)
    images = cards_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    if (output / "attention.png").is_file():
        shutil.copy2(output / "attention.png", images / f"{run.card}.png")
    with open(output / "validation" / "predictions.jsonl", encoding="utf-8") as f:
        samples = [json.loads(line) for _, line in zip(range(5), f, strict=False)]
    metrics = result["metrics"]
    reported = {f"validation_{k}": v for k, v in metrics.items() if k not in ("samples", "decoding_seconds")}

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")[:300]

    sample_rows = "\n".join(
        f"| {cell(s['source'])} | {cell(s['prediction'])} | {cell(s['reference'])} |" for s in samples
    )
    data_root = str(Path(_option(result["command"], "--train_file")).parent.parent)
    command = " ".join(["python", "scripts/train.py", *result["command"][2:]])
    command = command.replace(data_root, "$DATA").replace(str(output_root), "runs/recipes")
    training = (
        f"{run.summary}. {_f(result['epochs'])} epochs ({result['steps']} steps), {_time(result['train_runtime'])} "
        f"of training on {HARDWARE}, with a second run on the other core: {result['target_tokens_per_second']:.0f} "
        f"target tokens/s. Decoding the validation split ({' '.join(run.evaluate)}): "
        f"{metrics.get('sentences_per_second', 0):.1f} sentences/s. `python scripts/recipes/recipes.py run "
        f"{run.name} --data_dir $DATA` makes this model again: `scripts/train.py` as below, then "
        "`scripts/evaluate_model.py` on the validation file."
    )
    if result["earlier"]:
        before = ", then ".join(f"`{name}` ({_time(seconds)})" for name, seconds in result["earlier"])
        training += (
            f" This phase continues {before}: the recipe runs {'it' if len(result['earlier']) == 1 else 'them'} first."
        )
    for name in run.also_evaluate:
        other = json.loads((output / f"validation-{name}" / "metrics.json").read_text())
        reported |= {f"validation_{k}_{name}": other[k] for k in ("bleu", "bleu_lowercase", "chrf") if k in other}
    sections = {
        "Data": f"{corpus.title}. Licence: {corpus.licence}. Scores are on the validation split (the held-out test "
        "splits are not distributed with the data this was trained on); `scripts/evaluate_model.py` scores any "
        "JSON Lines file of the same layout."
        + (f"\n\nPublished numbers to compare with: {corpus.anchor}" if corpus.anchor else ""),
        "Sample outputs (validation)": "| source | output | reference |\n|---|---|---|\n" + sample_rows,
        "Attention": f"![attention of one validation sentence](images/{run.card}.png)",
    }
    card = build_model_card(
        model,
        model_name=run.card,
        datasets=[corpus.folder],
        metrics=reported,
        training_command=command,
        training_summary=training,
        example_input=samples[0]["source"] if samples else "",
        license="other" if run.corpus == "multi30k_de_en" else "apache-2.0",
        sections=sections,
        limitations=" ".join(text for text in (run.caveat, corpus.limitations) if text),
    )
    path = cards_dir / f"{run.card}.md"
    card.save(path)
    return path


def _section(title: str, intro: str, header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown section with one table (numbers right-aligned); nothing without rows."""
    if not rows:
        return []
    lines = [f"## {title}", "", intro, ""] if intro else [f"## {title}", ""]
    numeric = [all(row[i][:1].isdigit() or row[i] == "–" for row in rows) for i in range(len(header))]
    lines += ["| " + " | ".join(header) + " |", "|" + "".join("---:|" if n else "---|" for n in numeric)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows] + [""]


def _percent(value: float | None) -> str:
    return _f(value, 1, 100)


def report(output_root: Path, cards_dir: Path) -> str:
    """Writes model_cards/README.md (every finished run's numbers, in four tables) and the headline models' cards."""
    import hf_rnn_seq2seq  # noqa: F401  (the saved folders' AutoTokenizer/AutoModel classes, without remote code)

    results = {name: collect(run, output_root) for name, run in RUNS.items()}
    for run in RUNS.values():  # the training time of the runs a run continues (init_from), for its total
        if results[run.name]:
            earlier = [(r.name, results[r.name]["train_runtime"]) for r in _earlier(run) if results[r.name]]
            results[run.name]["earlier"] = earlier
    done = [run for run in RUNS.values() if results[run.name]]
    lines = [
        "# Results of the recipes",
        "",
        "Every number is measured on the **validation** split of the corpus, by `scripts/recipes/recipes.py` "
        f"(`report` writes this file). Training on {HARDWARE}; decoding with beam search (5 for translation, 4 for "
        "summaries). BLEU is sacreBLEU (13a; `zh` for Chinese), cased and lowercased; chrF is sacreBLEU's chrF; "
        "ROUGE F-measures in %.",
        "",
    ]
    headline = [run for run in done if run.card]
    lines += _section(
        "Models",
        "",
        [
            "model card",
            "data",
            "parameters",
            "BLEU",
            "BLEU (lowercased)",
            "chrF",
            "ROUGE-1 / 2 / L",
            "training",
            "tgt tokens/s",
        ],
        [
            [
                f"[{run.card}]({run.card}.md)",
                CORPORA[run.corpus].folder,
                f"{r['parameters'] / 1e6:.1f} M",
                _f(m["bleu"]),
                _f(m["bleu_lowercase"]),
                _f(m["chrf"]),
                " / ".join(_percent(m.get(k)) for k in ("rouge1", "rouge2", "rougeL")) if "rouge1" in m else "–",
                _time(r["train_runtime"] + sum(seconds for _, seconds in r["earlier"]))
                + (f" ({len(r['earlier']) + 1} phases)" if r["earlier"] else ""),
                f"{r['target_tokens_per_second']:.0f}",
            ]
            for run in headline
            for r in [results[run.name]]
            for m in [r["metrics"]]
        ],
    )
    ablation: dict[str, list[dict]] = {}
    for run in done:
        if run.group == "ablation":
            ablation.setdefault(run.summary, []).append(results[run.name])
    lines += _section(
        "Ablation (Multi30k de→en, 700 steps of 64 pairs each, same model sizes)",
        "Mean over seeds, each seed in brackets. Every row has a bidirectional encoder and input feeding unless it "
        "says otherwise. Perplexity: of the validation references under the model (teacher forcing), which ranks "
        "models early in training more steadily than BLEU.",
        ["variant", "seeds", "parameters", "BLEU", "BLEU (lowercased)", "chrF", "perplexity"],
        [
            [variant, str(len(found)), f"{found[0]['parameters'] / 1e6:.2f} M"]
            + [_seeds([r["metrics"][key] for r in found]) for key in ("bleu", "bleu_lowercase", "chrf")]
            + [_seeds([r["metrics"].get("reference_perplexity", math.nan) for r in found])]
            for variant, found in ablation.items()
        ],
    )
    statistics_keys = ("copied_word_share", "novel_ngram_share", "repeated_ngram_rate")
    lines += _section(
        "Summarisation: attention, pointer-generator, pointer-generator + coverage",
        "Copied: share of the summary's words found in its source. Novel: share of its trigrams not in the source. "
        "Repeated: share of its trigrams that repeat an earlier trigram of the same summary (See et al. 2017, "
        "Figure 4). The references' rates are in the last column. In %. The lead rows are the extractive baseline "
        "of summarisation papers, without a model: the source's first sentences.",
        [
            "data",
            "variant",
            "ROUGE-1",
            "ROUGE-2",
            "ROUGE-L",
            "copied",
            "novel",
            "repeated",
            "references: copied / novel / repeated",
        ],
        [
            [CORPORA[run.corpus].folder, run.summary]
            + [_percent(m[key]) for key in ("rouge1", "rouge2", "rougeL", *statistics_keys)]
            + [" / ".join(_percent(m[f"reference_{key}"]) for key in statistics_keys)]
            for run in done
            if run.group in ("scitldr", "cnndm")
            for m in [results[run.name]["metrics"]]
        ],
    )
    lines += _section(
        "Copying out-of-vocabulary words (Multi30k de→en, word-level vocabulary capped at 3 000)",
        "Reference words outside the vocabulary, and the share (%) of them the outputs reproduce; copyable: those "
        "that also occur in the German source (names, numbers, some shared words).",
        ["variant", "BLEU", "chrF", "reference OOV words", "reproduced", "copyable OOV words", "reproduced"],
        [
            [
                run.summary,
                _f(m["bleu"]),
                _f(m["chrf"]),
                f"{m['reference_oov_words']:.0f}",
                _percent(m["oov_reproduced"]),
                f"{m['copyable_oov_words']:.0f}",
                _percent(m["copyable_oov_reproduced"]),
            ]
            for run in done
            if run.group == "oov"
            for m in [results[run.name]["metrics"]]
        ],
    )
    anchors = {CORPORA[run.corpus].folder: CORPORA[run.corpus].anchor for run in done if CORPORA[run.corpus].anchor}
    if anchors:
        lines += ["## Published numbers on the same data", ""]
        lines += [f"- **{folder}**: {anchor}" for folder, anchor in anchors.items()] + [""]
    missing = [run.name for run in RUNS.values() if not results[run.name]]
    if missing:
        lines += ["Not run yet: " + ", ".join(f"`{name}`" for name in missing) + ".", ""]
    cards_dir.mkdir(parents=True, exist_ok=True)
    for run in headline:
        write_card(run, results[run.name], output_root, cards_dir)
    text = "\n".join(lines)
    (cards_dir / "README.md").write_text(text + "\n", encoding="utf-8")
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands_ = parser.add_subparsers(dest="command", required=True)
    commands_.add_parser("list", help="the recipes and their runs")
    run_parser = commands_.add_parser("run", help="train and evaluate runs")
    run_parser.add_argument("names", nargs="+", help="recipes (groups), run names, or all")
    run_parser.add_argument("--data_dir", type=Path, required=True, help="the folder holding multi30k/, ... ")
    run_parser.add_argument("--output_root", type=Path, default=REPO / "runs" / "recipes")
    run_parser.add_argument("--dry_run", action="store_true", help="print the commands only")
    run_parser.add_argument("--force", action="store_true", help="run again what is done or claimed")
    run_parser.add_argument(
        "--evaluate_only", action="store_true", help="evaluate and plot trained runs again (decoding changed)"
    )
    report_parser = commands_.add_parser("report", help="model cards and the results table from finished runs")
    report_parser.add_argument("--output_root", type=Path, default=REPO / "runs" / "recipes")
    report_parser.add_argument("--cards_dir", type=Path, default=REPO / "model_cards")
    args = parser.parse_args(argv)
    if args.command == "list":
        for group in dict.fromkeys(run.group for run in RUNS.values()):
            print(group)
            for run in (run for run in RUNS.values() if run.group == group):
                print(f"  {run.name:<38} {run.summary}")
    elif args.command == "run":
        args.data_dir, args.output_root = args.data_dir.resolve(), args.output_root.resolve()
        for run in select(args.names):
            execute(run, args.data_dir, args.output_root, args.dry_run, args.force, args.evaluate_only)
    else:
        print(report(args.output_root, args.cards_dir))


if __name__ == "__main__":
    main()
