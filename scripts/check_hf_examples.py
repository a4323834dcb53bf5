"""Runs transformers' own example scripts, unchanged, on models of this package, and checks what they produce.

transformers' `examples/pytorch/translation/run_translation.py` and `examples/pytorch/summarization/
run_summarization.py` are not part of this repository: take them from the transformers release you have installed.

    git clone --depth 1 --branch v$(python -c "import transformers; print(transformers.__version__)") \\
        https://github.com/huggingface/transformers /tmp/transformers
    python scripts/check_hf_examples.py --examples_dir /tmp/transformers/examples/pytorch

What it does, in a fresh working folder (`--workdir`, default a temporary one):
1. trains two small base models with `scripts/train.py` on its built-in tasks: attention on numbers (for translation),
   copy (extended vocabulary) + coverage on names (for summarization); `--translation_model` / `--summarization_model`
   use folders you already have instead;
2. writes train/validation/test JSON Lines files in each script's layout (a new sample of the same task);
3. runs each script with `--model_name_or_path <folder> --trust_remote_code --do_train --do_eval --do_predict
   --predict_with_generate --num_beams 4` (translation also with `--label_smoothing_factor 0.1`), offline: the
   package's metric scripts are exported to the working folder, where `evaluate.load("sacrebleu")` and
   `evaluate.load("rouge")` find them, and when nltk has no `punkt` data a parameterless Punkt model is written to
   `NLTK_DATA` (it splits sentences at every full stop; it only affects ROUGE-Lsum);
4. loads each output folder in a fresh interpreter in which `hf_rnn_seq2seq` cannot be imported, and generates;
5. prints one line per script and exits non-zero if anything failed.

`--compat_older_scripts` runs example scripts written for transformers 4.x under transformers 5 by supplying the three
names v5 removed and those scripts still use (`send_example_telemetry`, `is_offline_mode` in `transformers.utils`,
`TrainingArguments.overwrite_output_dir`); the scripts' files are still run unchanged.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from hf_rnn_seq2seq.metrics_rnn_seq2seq import export_metric_modules
from hf_rnn_seq2seq.tasks_rnn_seq2seq import make_task

REPO = Path(__file__).resolve().parent.parent
SPLITS = ("train", "validation", "test")

COMPAT_RUNNER = """
import runpy, sys
import huggingface_hub.constants, transformers.utils
from transformers import TrainingArguments
transformers.utils.send_example_telemetry = getattr(transformers.utils, "send_example_telemetry", lambda *a, **k: None)
transformers.utils.is_offline_mode = getattr(
    transformers.utils, "is_offline_mode", lambda: bool(huggingface_hub.constants.HF_HUB_OFFLINE))
if not hasattr(TrainingArguments, "overwrite_output_dir"):
    TrainingArguments.overwrite_output_dir = False
script, sys.argv = sys.argv[1], sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""

# Loads a folder where the package cannot be imported (as for a user who has only transformers) and generates.
REMOTE_GENERATE = """
import importlib.abc, json, sys
class NoPackage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "hf_rnn_seq2seq":
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, NoPackage())
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
folder, source = sys.argv[1], sys.argv[2]
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)  # AutoTokenizer reads config.json too
model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True).eval()
output = model.generate(**tokenizer([source], return_tensors="pt"), num_beams=4, max_new_tokens=40)
print(json.dumps({"module": type(model).__module__, "text": tokenizer.decode(output[0], skip_special_tokens=True)}))
"""


def run(command: list[str], cwd: Path, env: dict, log: Path) -> None:
    with open(log, "w") as out:
        result = subprocess.run(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = "".join(open(log).readlines()[-40:])
        raise RuntimeError(f"{' '.join(command[:3])}... failed (exit {result.returncode}); log {log}:\n{tail}")


def train_base_model(output_dir: Path, extra: list[str], env: dict, workdir: Path) -> Path:
    command = [sys.executable, str(REPO / "scripts" / "train.py"), "--output_dir", str(output_dir),
               "--num_train_epochs", "4", "--num_examples_to_print", "0", *extra]  # fmt: skip
    run(command, workdir, env, workdir / f"{output_dir.name}.log")
    return output_dir


def write_data(folder: Path, layout: str) -> dict[str, Path]:
    """A fresh sample (another seed than the base models saw) of the built-in numbers task in `run_translation`'s
    layout (`{"translation": {"en": …, "zh": …}}`, .jsonl), or of the names task (made-up names to copy) in
    `run_summarization`'s (`{"text": …, "summary": …}`, .json: that script accepts only .json or .csv names)."""
    task, (source, target) = ("numbers", ("en", "zh")) if layout == "translation" else ("names", ("en", "en_greeting"))
    data = make_task(task, seed=1, sizes=(1000, 100, 100))
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in SPLITS:
        paths[split] = folder / (f"{split}.jsonl" if layout == "translation" else f"{split}.json")
        with open(paths[split], "w", encoding="utf-8") as out:
            for pair in data[split]["translation"]:
                row = (
                    {"translation": pair}
                    if layout == "translation"
                    else {"text": pair[source], "summary": pair[target]}
                )
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return paths


def ensure_punkt(nltk_data: Path) -> None:
    """run_summarization.py needs nltk's `punkt` (it downloads it when online). Offline, without it, write a
    Punkt model without learned parameters (no abbreviation list)."""
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        return
    except LookupError:
        pass
    (nltk_data / "tokenizers" / "punkt").mkdir(parents=True, exist_ok=True)
    english = nltk_data / "tokenizers" / "punkt_tab" / "english"
    english.mkdir(parents=True, exist_ok=True)
    for name in ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab"):
        (english / name).write_text("")


def run_example(script: Path, model: Path, task: str, workdir: Path, env: dict, compat: bool) -> dict:
    data = write_data(workdir / f"data_{task}", task)
    output_dir = workdir / f"out_{task}"
    common = [
        "--model_name_or_path", str(model), "--trust_remote_code", "true", "--output_dir", str(output_dir),
        "--train_file", str(data["train"]), "--validation_file", str(data["validation"]),
        "--test_file", str(data["test"]), "--do_train", "--do_eval", "--do_predict", "--predict_with_generate",
        "--num_beams", "4", "--num_train_epochs", "1", "--per_device_train_batch_size", "32",
        "--per_device_eval_batch_size", "50", "--learning_rate", "1e-3", "--max_source_length", "64",
        "--max_target_length", "64", "--report_to", "none", "--seed", "0",
    ]  # fmt: skip
    if task == "translation":
        common += ["--source_lang", "en", "--target_lang", "zh", "--label_smoothing_factor", "0.1"]
    else:
        common += ["--text_column", "text", "--summary_column", "summary"]
    prefix = [sys.executable, "-c", COMPAT_RUNNER] if compat else [sys.executable]
    run([*prefix, str(script), *common], workdir, env, workdir / f"{script.stem}.log")

    results = json.loads((output_dir / "all_results.json").read_text())
    predictions = (output_dir / "generated_predictions.txt").read_text(encoding="utf-8").splitlines()
    references = [json.loads(line) for line in open(data["test"], encoding="utf-8")]
    source = references[0]["translation"]["en"] if task == "translation" else references[0]["text"]
    reloaded = subprocess.run(
        [sys.executable, "-c", REMOTE_GENERATE, str(output_dir), source],
        cwd=tempfile.gettempdir(), env={k: v for k, v in env.items() if k != "PYTHONPATH"},
        capture_output=True, text=True,
    )  # fmt: skip
    if reloaded.returncode != 0:
        raise RuntimeError(f"reloading {output_dir} without the package failed:\n{reloaded.stderr[-3000:]}")
    generated = json.loads(reloaded.stdout.strip().splitlines()[-1])
    if generated["module"].startswith("hf_rnn_seq2seq"):
        raise RuntimeError("the reload used the installed package, not the folder's code")
    if len(predictions) != len(references):
        raise RuntimeError(f"{len(predictions)} predictions for {len(references)} test examples")
    return {"results": results, "sample": (source, predictions[0], generated["text"])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples_dir", required=True, type=Path, help="transformers' examples/pytorch folder")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a new temporary folder")
    parser.add_argument("--translation_model", type=Path, default=None, help="default: trained here (attention)")
    parser.add_argument("--summarization_model", type=Path, default=None, help="default: trained here (copy+coverage)")
    parser.add_argument("--compat_older_scripts", action="store_true", help="run 4.x example scripts (see above)")
    args = parser.parse_args(argv)

    scripts = {
        "translation": args.examples_dir / "translation" / "run_translation.py",
        "summarization": args.examples_dir / "summarization" / "run_summarization.py",
    }
    missing = [str(path) for path in scripts.values() if not path.is_file()]
    if missing:
        parser.error(f"not found: {', '.join(missing)}")
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="hf_examples_"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    export_metric_modules(workdir, ["sacrebleu", "rouge"])
    ensure_punkt(workdir / "nltk_data")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1",
               NLTK_DATA=str(workdir / "nltk_data"), HF_MODULES_CACHE=str(workdir / "modules"))  # fmt: skip

    models = {
        "translation": args.translation_model or train_base_model(workdir / "base_attention", [], env, workdir),
        "summarization": args.summarization_model
        or train_base_model(
            workdir / "base_copy_coverage", ["--task", "names", "--use_coverage", "true"], env, workdir
        ),
    }
    failures = 0
    for task, script in scripts.items():
        try:
            report = run_example(script, models[task].resolve(), task, workdir, env, args.compat_older_scripts)
        except (RuntimeError, OSError, ValueError) as error:
            failures += 1
            print(f"FAIL {script.name}: {error}")
            continue
        metrics = {k: v for k, v in report["results"].items() if k.startswith(("eval_", "predict_")) and
                   any(name in k for name in ("bleu", "rouge", "loss", "gen_len"))}  # fmt: skip
        print(f"OK   {script.name}: {json.dumps(metrics)}")
        print(f"     {report['sample'][0]!r} -> script: {report['sample'][1]!r}; reloaded without the package: "
              f"{report['sample'][2]!r}")  # fmt: skip
    print(f"working folder: {workdir}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
