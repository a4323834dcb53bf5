# Copyright 2026 The hf-rnn-seq2seq authors. Licensed under the Apache License, Version 2.0.
"""Built-in generated tasks (small, seeded, reproducible datasets that need no download), and loading of text pairs
from files in the layouts of the HF example scripts.

- `numbers`: the lecture's exercise, English number words to Chinese numerals (`seven zero three → 七 零 三`).
- `names`: greetings with made-up names that no vocabulary holds (`ask Zorbu about tea → hello Zorbu , tea ?`):
  a model without copy can only write `<unk>` for them; one with an extended copy vocabulary copies them.

Each task is a `datasets.DatasetDict` with `train` / `validation` / `test` splits in the layout of the HF translation
example scripts: one column `translation` holding `{source_lang: text, target_lang: text}`.
"""

import random
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset

ENGLISH_DIGITS = "zero one two three four five six seven eight nine".split()
CHINESE_DIGITS = list("零一二三四五六七八九")
NAME_WORDS = "tea coffee music rain books trains chess maps".split()
NAME_VERBS = ["ask", "tell", "call", "greet"]


def _numbers(rng: random.Random) -> tuple[str, str]:
    digits = [rng.randrange(10) for _ in range(rng.randint(1, 8))]
    return " ".join(ENGLISH_DIGITS[d] for d in digits), " ".join(CHINESE_DIGITS[d] for d in digits)


def _made_up_name(rng: random.Random) -> str:
    letters = [rng.choice("aeiou" if i % 2 else "bdfgklmnprstvz") for i in range(rng.randint(3, 7))]
    return "".join(letters).capitalize()


def _names(rng: random.Random) -> tuple[str, str]:
    name, topics = _made_up_name(rng), rng.sample(NAME_WORDS, rng.randint(1, 3))
    source = f"{rng.choice(NAME_VERBS)} {name} about {' and '.join(topics)}"
    return source, f"hello {name} , {' , '.join(topics)} ?"


TASKS = {
    "numbers": dict(make=_numbers, source_lang="en", target_lang="zh", sizes=(6000, 200, 200)),
    "names": dict(make=_names, source_lang="en", target_lang="en_greeting", sizes=(3000, 200, 200)),
}


def make_task(name: str, seed: int = 0, sizes: tuple[int, int, int] | None = None) -> DatasetDict:
    """The built-in task `name` ("numbers" or "names"), generated with `seed`.

    `sizes` overrides the (train, validation, test) sizes. Pairs are distinct across splits, so held-out scores
    measure generalisation, not memory.
    """
    if name not in TASKS:
        raise ValueError(f"Unknown built-in task {name!r}; choose one of {sorted(TASKS)}.")
    task = TASKS[name]
    sizes = sizes or task["sizes"]
    rng = random.Random(seed)
    seen, splits = set(), []
    for size in sizes:
        rows = []
        for _ in range(100 * size):  # bounded: small tasks cannot loop forever looking for unseen pairs
            if len(rows) == size:
                break
            source, target = task["make"](rng)
            if source in seen:
                continue
            seen.add(source)
            rows.append({"translation": {task["source_lang"]: source, task["target_lang"]: target}})
        splits.append(Dataset.from_list(rows))
    return DatasetDict(train=splits[0], validation=splits[1], test=splits[2])


def task_languages(name: str) -> tuple[str, str]:
    """(source_lang, target_lang) keys of a built-in task."""
    if name not in TASKS:
        raise ValueError(f"Unknown built-in task {name!r}; choose one of {sorted(TASKS)}.")
    return TASKS[name]["source_lang"], TASKS[name]["target_lang"]


def load_text_pairs(
    task: str | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    data_files: dict[str, str] | None = None,
    source_lang: str | None = None,
    target_lang: str | None = None,
    text_column: str | None = None,
    summary_column: str | None = None,
) -> tuple[DatasetDict, str, str]:
    """Source/target text pairs as a `DatasetDict` with two flat text columns, and the names of those columns.

    From a built-in `task`, a Hub dataset (`dataset_name`, online only), or local `data_files` (`{"train": path,
    "validation": path, "test": path}`, .json/.jsonl or .csv). The layouts are those of the HF example scripts: a
    `translation` column of `{lang: text}` dicts chosen with `source_lang`/`target_lang` (flattened into columns named
    after the two languages), or flat columns chosen with `text_column`/`summary_column`. Missing files, columns or
    language keys and empty splits raise errors that name them.
    """
    if task:
        raw = make_task(task, seed=0)
        source_lang, target_lang = task_languages(task)
        return _flatten_translation(raw, source_lang, target_lang), source_lang, target_lang
    if dataset_name:
        raw = load_dataset(dataset_name, dataset_config_name)
    else:
        data_files = dict(data_files or {})
        if not data_files:
            raise ValueError(
                "Give data files (--train_file, --validation_file, --test_file), a dataset name or a task."
            )
        for split, path in data_files.items():
            if not Path(path).is_file():
                raise FileNotFoundError(f"The {split} file {path} does not exist.")
        suffixes = {Path(path).suffix for path in data_files.values()}
        if len(suffixes) != 1 or not suffixes <= {".json", ".jsonl", ".csv"}:
            raise ValueError(f"Data files must all be .json/.jsonl or all .csv, got {sorted(data_files.values())}.")
        for split, path in data_files.items():
            if Path(path).stat().st_size == 0:
                raise ValueError(f"The {split} file {path} is empty.")
        raw = load_dataset("csv" if suffixes == {".csv"} else "json", data_files=data_files)
    for split, dataset in raw.items():
        if len(dataset) == 0:
            raise ValueError(f"The {split} split is empty.")
    columns = raw[next(iter(raw))].column_names
    if source_lang or target_lang:
        if not (source_lang and target_lang):
            raise ValueError("Give both a source and a target language key.")
        if "translation" not in columns:
            raise ValueError(f"Language keys need a `translation` column; the data has columns {columns}.")
        keys = set(raw[next(iter(raw))][0]["translation"])
        for lang in (source_lang, target_lang):
            if lang not in keys:
                raise ValueError(f"Language key {lang!r} is not in the translation column (it has {sorted(keys)}).")
        return _flatten_translation(raw, source_lang, target_lang), source_lang, target_lang
    if not (text_column and summary_column):
        raise ValueError(
            "Say which columns hold the pairs: source and target language keys of a `translation` column, or a text "
            f"and a summary column (the data has columns {columns})."
        )
    for column in (text_column, summary_column):
        if column not in columns:
            raise ValueError(f"Column {column!r} not found; the data has columns {columns}.")
    return raw, text_column, summary_column


def _flatten_translation(raw: DatasetDict, source_lang: str, target_lang: str) -> DatasetDict:
    return raw.map(
        lambda batch: {
            source_lang: [pair[source_lang] for pair in batch["translation"]],
            target_lang: [pair[target_lang] for pair in batch["translation"]],
        },
        batched=True,
        remove_columns=["translation"],
    )


__all__ = ["TASKS", "load_text_pairs", "make_task", "task_languages"]
