"""Command line: `bertcompress run | optimize | reproduce | compress | eval | bench | export | predict | heads | hardware |
methods`."""
from __future__ import annotations

import functools
import inspect
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Optional

import click
import typer
from rich.console import Console
from rich.table import Table

from bertcompress.cli_errors import INTERRUPTED, report
from bertcompress.core.errors import BertCompressError
from bertcompress.files import check_name, check_output_path
from bertcompress.io import check_sequence_length, check_source

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Make BERT-family encoders smaller and faster while keeping their accuracy.")
console = Console(stderr=True)

ModelOpt = typer.Option("minilm", "--model", "-m", help="'minilm' (packaged), a local model directory or a hub id")
TaskOpt = typer.Option("rotten_tomatoes", "--task", "-t", help="built-in task: rotten_tomatoes, vitaminc "
                       "(classification), squad (question answering), conll2003 (token classification)")
TrainFileOpt = typer.Option(None, "--train", help="your data: .csv/.tsv/.jsonl (classification; embedding also .txt), "
                            "SQuAD .json (question_answering), CoNLL or tokens/tags .jsonl (token_classification); "
                            "split 80/10/10 unless --eval")
EvalFileOpt = typer.Option(None, "--eval", help="held-out data with the same columns (used for validation and test)")
TextColumnOpt = typer.Option("text", help="column with the (first) text")
PairColumnOpt = typer.Option(None, help="column with the second text of a pair")
LabelColumnOpt = typer.Option("label", help="column with the label")
TaskTypeOpt = typer.Option(None, "--task-type", help="classification, question_answering, token_classification "
                           "or embedding (sentence vectors as sentence-transformers computes them; a classification "
                           "task's texts, its labels scoring neighbours); default: the task's own")
OverwriteOpt = typer.Option(False, "--overwrite", help="replace an output that bertcompress wrote before")
MaxLengthOpt = typer.Option(64, min=8, max=4096, help="tokens per example (truncation) and latency sequence length")
RepeatsOpt = typer.Option(20, min=1, help="latency repeats per model and batch size")
ThreadsOpt = typer.Option(None, min=1, help="torch CPU threads for latency (default: torch's)")
OutputOpt = typer.Option(Path("runs"), "--output", "-o", help="parent directory of the run directory")
SeedOpt = typer.Option(0, min=0, help="seed for the split, the head initialisation, training and sampling")
EpochsOpt = typer.Option(2.0, help="teacher fine-tuning epochs")
MaxTrainOpt = typer.Option(None, min=1, help="use only the first N training examples")
MaxEvalOpt = typer.Option(None, min=1, help="use only the first N validation and test examples")


class Runtime(str, Enum):
    torch = "torch"
    onnxruntime = "onnxruntime"
    openvino = "openvino"


RuntimeOpt = typer.Option(None, "--runtime", help="torch, onnxruntime or openvino (default: what the model "
                          "directory holds: a saved model runs in torch, an export in its runtime)")


def open_for(model: str, runtime: Optional["Runtime"], threads: Optional[int] = None, num_labels=None,
             task_type: Optional[str] = None):
    """A saved model or an export, ready to run in the runtime asked for (or the one it is for)."""
    import bertcompress as bc
    from bertcompress.io import resolve
    from bertcompress.runtimes import open_model, runtime_of

    path = resolve(model)
    chosen = runtime.value if runtime else runtime_of(path)
    if chosen == "torch":
        return bc.load(model, num_labels=num_labels, task_type=task_type)
    return open_model(path, chosen, threads)


class Split(str, Enum):
    train = "train"
    validation = "validation"
    test = "test"


def SplitOpt(default: str):  # noqa: N802 - an option factory, named like the others
    return typer.Option(default, help="which split: train, validation or test")


@dataclass(frozen=True)
class DataSource:
    """The model and data options every data-using command shares."""

    model: str
    task: str
    train_file: Optional[Path]
    eval_file: Optional[Path]
    text_column: str
    text_pair_column: Optional[str]
    label_column: str
    task_type: Optional[str] = None

    def task_spec(self, seed: int, max_train: Optional[int] = None, max_eval: Optional[int] = None):
        """The task, after the cheap model-path check (so a typo fails before the data is fetched)."""
        from bertcompress.data import tasks

        check_source(self.model)

        if self.eval_file and not self.train_file:
            raise BertCompressError("--eval needs --train as well")
        if self.train_file:
            columns = tasks.Columns(text=self.text_column, label=self.label_column, text_pair=self.text_pair_column)
            spec = tasks.from_files(self.train_file, self.eval_file, columns, seed=seed,
                                    task_type=self.task_type or "classification")
        else:
            spec = tasks.get(self.task, seed=seed, task_type=self.task_type)
        if max_train or max_eval:
            spec = spec.sliced(max_train, max_eval)
        for split in ("train", "validation", "test"):
            if not spec.split(split):
                raise BertCompressError(f"task {spec.name!r}: split {split!r} is empty")
        return spec


DATA_OPTIONS = {
    "model": (str, ModelOpt), "task": (str, TaskOpt), "train_file": (Optional[Path], TrainFileOpt),
    "eval_file": (Optional[Path], EvalFileOpt), "text_column": (str, TextColumnOpt),
    "text_pair_column": (Optional[str], PairColumnOpt), "label_column": (str, LabelColumnOpt),
    "task_type": (Optional[str], TaskTypeOpt),
}


def with_data_options(command):
    """Declare the shared model/data options once: the command receives them as `data: DataSource`."""
    own = [p for p in inspect.signature(command).parameters.values() if p.name != "data"]
    shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
              for name, (kind, option) in DATA_OPTIONS.items()]

    @functools.wraps(command)
    def wrapper(**values):
        return command(data=DataSource(**{name: values.pop(name) for name in DATA_OPTIONS}), **values)

    wrapper.__signature__ = inspect.Signature([*shared, *[p.replace(kind=p.KEYWORD_ONLY) for p in own]])
    wrapper.__annotations__ = {**{n: k for n, (k, _) in DATA_OPTIONS.items()},
                               **{k: v for k, v in command.__annotations__.items() if k != "data"}}
    return wrapper


@app.command()
@with_data_options
def run(
    data: DataSource,
    recipe: list[str] = typer.Option(["dynamic-int8", "dynamic-int8-linears"], "--recipe", "-r",
                                     help="built-in recipe name or YAML path; repeat for several variants"),
    output: Path = OutputOpt,
    name: Optional[str] = typer.Option(None, help="run directory name (default: task-recipes-seed)"),
    overwrite: bool = OverwriteOpt,
    seed: int = SeedOpt,
    epochs: float = EpochsOpt,
    max_steps: Optional[int] = typer.Option(None, min=1, help="teacher optimizer steps (overrides --epochs)"),
    learning_rate: float = typer.Option(6e-5, "--lr"),
    batch_size: int = typer.Option(32, min=1),
    max_length: int = MaxLengthOpt,
    max_train: Optional[int] = MaxTrainOpt,
    max_eval: Optional[int] = MaxEvalOpt,
    repeats: int = RepeatsOpt,
    threads: Optional[int] = ThreadsOpt,
    checkpoint_every: int = typer.Option(100, min=1, help="optimizer steps between resumable training checkpoints"),
    memory: bool = typer.Option(True, "--memory/--no-memory", help="probe each variant's peak memory"),
    runtime: list[Runtime] = typer.Option([Runtime.torch], "--runtime", help="torch, onnxruntime or openvino; "
                                          "repeat to export every model (verified) to each runtime and time all "
                                          "of them in one run"),
) -> None:
    """Main job: fine-tune the teacher (cached), apply each recipe, evaluate every variant, write a report."""
    from bertcompress.pipeline import RunOptions
    from bertcompress.pipeline import run as run_pipeline
    from bertcompress.recipe import resolve_recipe
    from bertcompress.training.loop import TrainConfig

    recipes = [resolve_recipe(r) for r in recipe]
    train_config = TrainConfig(epochs=epochs, max_steps=max_steps, learning_rate=learning_rate,
                               batch_size=batch_size, max_length=max_length, seed=seed,
                               checkpoint_every=checkpoint_every)
    check_name(name) if name is not None else None
    spec = data.task_spec(seed, max_train, max_eval)  # the data first: its errors need no model download
    check_sequence_length(data.model, max_length)
    options = RunOptions(model=data.model, recipes=recipes, output=output, name=name, train=train_config,
                         seq_len=max_length, repeats=repeats, threads=threads, measure_memory=memory,
                         overwrite=overwrite, runtimes=tuple(dict.fromkeys(r.value for r in runtime)))
    run_pipeline(spec, options, console)


def parse_duration(text: str) -> float:
    """'90s', '30m', '2h' or a number of seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise BertCompressError(f"--time-budget {text!r}: use a number with s, m or h (e.g. 30m, 2h)") from None
    if not value > 0 or value == float("inf"):
        raise BertCompressError(f"--time-budget {text!r} must be a positive, finite duration")
    return value


@app.command()
@with_data_options
def optimize(
    data: DataSource,
    max_drop: float = typer.Option(1.0, help="accuracy points below the teacher you accept (on validation)"),
    objective: str = typer.Option("latency", help="latency (fastest within the budget) or size (smallest)"),
    batch_size: int = typer.Option(32, min=1, max=4096, help="batch size the latency objective is measured at"),
    time_budget: Optional[str] = typer.Option(None, help="search time, e.g. 30m or 2h (all workers together)"),
    trials: Optional[int] = typer.Option(None, min=1, help="stop after N trials (all workers together)"),
    workers: int = typer.Option(1, min=1, help="parallel worker processes sharing one study"),
    storage: Optional[str] = typer.Option(None, help="Optuna storage URL shared by workers (sqlite:///f.db, "
                                          "postgresql://..., journal:PATH); default: a journal file in the cache"),
    output: Path = OutputOpt,
    name: Optional[str] = typer.Option(None, help="run directory name"),
    overwrite: bool = OverwriteOpt,
    seed: int = SeedOpt,
    epochs: float = EpochsOpt,
    max_steps: Optional[int] = typer.Option(None, min=1, help="teacher optimizer steps (overrides --epochs)"),
    max_train: Optional[int] = MaxTrainOpt,
    max_eval: Optional[int] = MaxEvalOpt,
    repeats: int = RepeatsOpt,
    peers: bool = typer.Option(True, "--peers/--no-peers", help="measure the paths a user would pick instead on "
                               "the teacher too: torch bf16 and dynamic int8, ONNX Runtime dynamic int8, OpenVINO "
                               "bf16, OpenVINO + NNCF int8"),
    quick: bool = typer.Option(False, "--quick", help="a small space (full or half depth, light pruning, 1 epoch "
                               "of distillation): a first answer in minutes"),
    space: list[str] = typer.Option([], "--space", help="replace one knob's values in the space, e.g. "
                                    "layers=4,3 or quantization=int8,qat-static-int8 or distill_epochs=4 "
                                    "(repeat for more knobs; knobs: layers, head_fractions, ffn_fractions, "
                                    "vocabulary, quantization, distill_epochs, recovery_epochs)"),
    unlabelled: bool = typer.Option(False, "--unlabelled", help="distillation steps also learn from the task's "
                                    "unlabelled text, labelled by the teacher (Rotten Tomatoes: its 'plot' rows)"),
    unlabelled_file: Optional[Path] = typer.Option(None, "--unlabelled-file", help="your unlabelled text for "
                                                   "distillation (.csv/.tsv/.jsonl, --text-column)"),
) -> None:
    """Search compositions of methods for the fastest (or smallest) model within --max-drop points."""
    from bertcompress.search.optimize import OptimizeOptions
    from bertcompress.search.optimize import optimize as run_search
    from bertcompress.training.loop import TrainConfig

    budget = parse_duration(time_budget) if time_budget is not None else None
    options = OptimizeOptions(model=data.model, max_drop=max_drop, objective=objective, batch_size=batch_size,
                              time_budget=budget, trials=trials, workers=workers, storage=storage, output=output,
                              name=check_name(name) if name else None, overwrite=overwrite,
                              train=TrainConfig(epochs=epochs, max_steps=max_steps, seed=seed), repeats=repeats,
                              peers=peers, quick=quick, space_overrides=tuple(space),
                              unlabelled=unlabelled or unlabelled_file is not None)
    options.check()
    spec = data.task_spec(seed, max_train, max_eval)
    if unlabelled_file is not None:
        from bertcompress.data.tasks import Columns, read_texts

        columns = Columns(text=data.text_column, text_pair=data.text_pair_column)
        spec.unlabelled = read_texts(unlabelled_file, columns)
    run_search(spec, options, console)


@app.command("compress")
def compress_command(
    model: str = typer.Argument(..., help="a saved or Hugging Face model directory"),
    out: Path = typer.Option(..., "--out", help="where to save the compressed model (a new directory)"),
    recipe: str = typer.Option(..., "--recipe", "-r", help="built-in recipe name or YAML path"),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Apply a recipe that needs no training data to a saved model and save the result."""
    import bertcompress as bc
    from bertcompress.recipe import resolve_recipe

    plan = resolve_recipe(recipe)
    check_output_path(out, overwrite)
    loaded, tokenizer = bc.load(model), bc.load_tokenizer(model)
    _, reports = plan.apply(loaded, bc.Context(tokenizer=tokenizer))
    bc.save(loaded, out, tokenizer, overwrite=overwrite)
    for step in reports:
        console.print(f"{step.method}: {step.modules_changed} modules, "
                      f"{step.bytes_before / 1e6:.1f} MB -> {step.bytes_after / 1e6:.1f} MB")
    console.print(f"[green]saved[/] {out}")


@app.command("eval")
@with_data_options
def eval_command(
    data: DataSource,
    split: Split = SplitOpt("test"),
    seed: int = typer.Option(0, min=0, help="seed of the split"),
    max_eval: Optional[int] = typer.Option(None, min=1, help="use only the first N examples"),
    max_length: int = MaxLengthOpt,
    runtime: Optional[Runtime] = RuntimeOpt,
    reference: Optional[str] = typer.Option(None, "--reference", help="embedding tasks: the model whose vectors "
                                            "to compare with (mean cosine, recall@10 of its nearest neighbours)"),
) -> None:
    """Accuracy and macro-F1 of a (compressed or exported) model on a task split; for embedders 10-NN
    accuracy, and agreement with a --reference model's vectors."""
    import bertcompress as bc
    from bertcompress.data.batching import encode
    from bertcompress.evaluation.metrics import score

    split = split.value
    spec = data.task_spec(seed, max_eval=max_eval)
    check_sequence_length(data.model, max_length)
    loaded = open_for(data.model, runtime, num_labels=spec.num_labels, task_type=spec.type)
    check_runtime_type(loaded, spec.type, data.model)
    tokenizer = bc.load_tokenizer(data.model)
    if spec.type == "embedding":
        compared = None if reference is None else bc.load(reference, task_type=spec.type)
        return print(embedding_line(spec, split, loaded, compared, tokenizer, max_length))
    result, _ = score(loaded, encode(spec.split(split), tokenizer, max_length), spec.num_labels,
                      label_names=spec.label_names)
    print(f"{spec.name} {split}: {score_line(result, spec.type)}  (n={result['n']})")


def score_line(result: dict, task_type: str) -> str:
    """A split's scores in the words of its task type."""
    if task_type == "question_answering":
        return f"exact match {100 * result['exact_match']:.2f}  F1 {100 * result['f1']:.2f}"
    if task_type == "token_classification":
        if result["accuracy"] is None:
            return "no tags to score"
        return (f"entity F1 {100 * result['f1']:.2f}  precision {100 * result['precision']:.2f}  "
                f"recall {100 * result['recall']:.2f}")
    return f"accuracy {100 * result['accuracy']:.2f}  macro-F1 {100 * result['macro_f1']:.2f}"


def check_runtime_type(loaded, task_type: str, source: str) -> None:
    """An export carries its task type in its config; refuse one made for another type."""
    from bertcompress.core.task_types import task_type_of

    if task_type_of(loaded) != task_type:
        raise BertCompressError(f"{source}: is a {task_type_of(loaded)} model, not a {task_type} model")


def embedding_line(spec, split: str, loaded, reference, tokenizer, max_length: int) -> str:
    """10-NN accuracy (Spearman's rho on scored pairs), and mean cosine / neighbour recall against the
    reference model's vectors."""
    import bertcompress as bc
    from bertcompress.data.batching import encode
    from bertcompress.evaluation.metrics import score

    examples = spec.split(split)
    data = encode(examples, tokenizer, max_length)
    vectors = None
    if reference is not None:
        own_tokenizer = bc.load_tokenizer(getattr(reference, "_bertcompress_source"))
        vectors = score(reference, encode(examples, own_tokenizer, max_length), spec.num_labels)[1]
    result, _ = score(loaded, data, spec.num_labels, vectors)
    if "spearman" in result:
        quality = f"Spearman {100 * result['spearman']:.2f} over {result['pairs']} pairs"
    else:
        quality = "10-NN accuracy " + ("no labels" if result["knn_accuracy"] is None
                                       else f"{100 * result['knn_accuracy']:.2f}")
    agreement = "" if vectors is None else (f"  mean cosine {result['mean_cosine']:.4f}  recall@10 "
                                            f"{result['neighbour_recall_at_10']:.3f}")
    return f"{spec.name} {split}: {quality}{agreement}  (n={result['n']} texts)"


@app.command()
def bench(
    models: list[str] = typer.Argument(..., help="model directories or exports (or 'minilm') to compare, first is "
                                       "the baseline; each runs in the runtime its directory is for"),
    batch_size: list[int] = typer.Option([1, 32], "--batch-size", "-b", min=1, max=4096),
    seq_len: int = typer.Option(64, min=1),
    repeats: int = RepeatsOpt,
    threads: Optional[int] = ThreadsOpt,
) -> None:
    """CPU latency and throughput, models measured interleaved; ratios are to the first model."""
    from bertcompress.evaluation.latency import benchmark_many

    for m in models:
        check_sequence_length(m, seq_len, option="--seq-len")
    loaded = {m: open_for(m, None, threads) for m in models}
    results = benchmark_many(loaded, tuple(batch_size), seq_len, repeats, threads=threads)
    table = Table(title=f"seq {seq_len}, {results[models[0]]['threads']} thread(s), median of {repeats}")
    for column in ["model", *[f"b{b} ms" for b in batch_size], *[f"b{b} speedup" for b in batch_size]]:
        table.add_column(column)
    base = results[models[0]]
    for name, result in results.items():
        ms = [result[f"batch_{b}"]["median_ms"] for b in batch_size]
        ratios = [base[f"batch_{b}"]["median_ms"] / result[f"batch_{b}"]["median_ms"] for b in batch_size]
        table.add_row(name, *[f"{v:.1f}" for v in ms], *[f"{r:.2f}x" for r in ratios])
    Console().print(table)


class Format(str, Enum):
    onnx = "onnx"
    openvino = "openvino"
    transformers = "transformers"


@app.command("export")
def export_command(
    model: str = typer.Argument(..., help="a saved bertcompress or Transformers model directory"),
    to: Format = typer.Option(..., "--to", help="onnx (ONNX Runtime), openvino (IR) or transformers (plain checkpoint)"),
    out: Path = typer.Option(..., "--out", help="where to write the export (a new directory)"),
    optimize: bool = typer.Option(True, "--optimize/--no-optimize",
                                  help="ONNX Runtime's transformer fusions, kept only where the outputs still verify"),
    data: Optional[Path] = typer.Option(None, "--data", help="texts to verify on (.csv/.tsv/.jsonl); default: "
                                        "the --task test split"),
    task: str = TaskOpt,
    text_column: str = TextColumnOpt,
    text_pair_column: Optional[str] = PairColumnOpt,
    verify_examples: int = typer.Option(512, min=1, help="verify on the first N inputs"),
    int8: Optional[str] = typer.Option(None, "--int8", help="'static': quantize again with activation ranges "
                                       "calibrated on training text (NNCF for openvino, quantize_static for onnx); "
                                       "layers with static ranges of their own keep them"),
    calibration: Optional[Path] = typer.Option(None, "--calibration", help="texts for --int8 static (.csv/.tsv/"
                                               ".jsonl); default: the --task training split, else --data"),
    calibration_examples: int = typer.Option(300, min=1, help="calibrate on the first N texts"),
    max_length: int = MaxLengthOpt,
    overwrite: bool = OverwriteOpt,
) -> None:
    """Export a model to ONNX Runtime, OpenVINO or plain Transformers, verified against PyTorch first."""
    from bertcompress.data import tasks
    from bertcompress.export import ExportSettings, check_export_request, check_not_source, export_model

    check_source(model)
    check_not_source(model, out)
    check_export_request(to.value, out, overwrite, int8)
    check_sequence_length(model, max_length)
    columns = tasks.Columns(text=text_column, text_pair=text_pair_column)
    spec = None if data else tasks.get(task)
    examples = (tasks.read_texts(data, columns) if data else spec.split("test"))[:verify_examples]
    calibrate = None
    if int8:
        calibrate = (tasks.read_texts(calibration, columns) if calibration else
                     spec.split("train") if spec else examples)[:calibration_examples]
    settings = ExportSettings(max_length=max_length, optimize=optimize, overwrite=overwrite, int8=int8)
    found = export_model(model, to.value, out, examples, settings, calibrate)
    fused = ", ONNX Runtime fusions kept" if found.get("optimized") else ""
    fused += f", static int8 by {found['quantizer']}" if found.get("quantizer") else ""
    console.print(f"[green]verified[/] {to.value}: max |logit difference| {found['max_abs_logit_diff']:.2g}, "
                  f"agreement {found['agreement']:.2%} on {found['examples']} inputs{fused}; "
                  f"{found['size_mb']:.1f} MB -> {out}")
    if found.get("ffn_padded_from"):
        console.print(f"note: FFN layers padded with zero neurons to one width (from "
                      f"{found['ffn_padded_from']}) so plain Transformers can hold them; same outputs, more weights")


@app.command("predict")
def predict_command(
    model: str = typer.Argument(..., help="a saved model directory or an export (onnx/openvino/transformers)"),
    input_file: Path = typer.Option(..., "--input", "-i", help="texts to label (.csv/.tsv/.jsonl)"),
    output_file: Path = typer.Option(..., "--output", "-o", help="rows with 'prediction' and 'score' added "
                                     "(.csv/.tsv/.jsonl)"),
    runtime: Optional[Runtime] = RuntimeOpt,
    text_column: str = TextColumnOpt,
    text_pair_column: Optional[str] = PairColumnOpt,
    batch_size: int = typer.Option(32, min=1, max=4096),
    max_length: int = MaxLengthOpt,
    threads: Optional[int] = ThreadsOpt,
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output file"),
) -> None:
    """Add a model's prediction to every row of a file: the class (by name) and its probability; for QA
    models the answer (question in --text-column, context in --text-pair-column); for taggers one tag per
    word; for embedders the sentence vector."""
    from rich.progress import Progress

    from bertcompress.data.tasks import Columns
    from bertcompress.predict import PredictSettings, check_predict_request, predict_file

    settings = PredictSettings(runtime=runtime.value if runtime else None, max_length=max_length,
                               columns=Columns(text=text_column, text_pair=text_pair_column),
                               batch_size=batch_size, threads=threads, overwrite=overwrite)
    check_predict_request(model, input_file, output_file, settings)
    check_sequence_length(model, max_length)
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("predicting", total=None)
        count = predict_file(model, input_file, output_file, settings,
                             on_batch=lambda n: progress.advance(bar, n),
                             on_start=lambda total: progress.update(bar, total=total))
    console.print(f"[green]wrote[/] {count} predictions to {output_file}")


@app.command()
def hardware(
    repeats: int = typer.Option(10, min=1, help="GEMM probe repeats (median)"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """This CPU's features, installed runtimes, an fp32/bf16/int8 GEMM probe, and which precision pays here."""
    import json

    from bertcompress.hardware import report as hardware_report

    found = hardware_report(repeats)
    if as_json:
        print(json.dumps(found, indent=2))
        return
    out = Console()
    out.print(f"[bold]{found['cpu']}[/] ({found['machine']}), {found['threads']} torch thread(s)")
    out.print("features: " + (", ".join(found["features"]) or "none of interest"))
    out.print("runtimes: " + ", ".join(f"{k} {v or '(not installed)'}" for k, v in found["runtimes"].items()))
    probe = found["gemm_probe"]
    shape = "x".join(map(str, found["probe_shape"]))
    out.print(f"GEMM {shape}: " + ", ".join(f"{k[:-3]} {v:.2f} ms" for k, v in probe.items()))
    for line in found["advice"]:
        out.print(f"- {line}")


@app.command()
def methods() -> None:
    """List registered compression methods and their fields."""
    import bertcompress as bc

    for name, config in bc.registered().items():
        table = Table(title=f"{name}  ({config.__name__}): {(config.__doc__ or '').strip()}", title_justify="left")
        for column in ("field", "type", "default", "description"):
            table.add_column(column)
        for field_name, info in config.model_fields.items():
            default = info.default_factory() if info.default_factory else info.default
            annotation = getattr(info.annotation, "__name__", str(info.annotation)).replace("typing.", "")
            table.add_row(field_name, annotation, repr(default), info.description or "")
        Console().print(table)


@app.command("heads")
@with_data_options
def heads_command(
    data: DataSource,
    out: Path = typer.Option(Path("runs/heads"), "--out", "-o", help="directory for the tables, summary and heatmaps"),
    examples: int = typer.Option(256, min=1, help="analyse the first N examples of the split"),
    split: Split = SplitOpt("validation"),
    keep_one: bool = typer.Option(True, help="also score each head kept alone in its layer (doubles the cost)"),
    max_length: int = MaxLengthOpt,
    seed: int = typer.Option(0, min=0, help="seed of the split"),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Attention-head analysis: Kovaleva patterns, Voita roles, Michel ablations and gradient importance."""
    import bertcompress as bc
    from bertcompress.analysis import write_head_analysis

    split = split.value
    check_output_path(out, overwrite)
    spec = data.task_spec(seed)
    check_sequence_length(data.model, max_length)
    loaded = bc.load(data.model, num_labels=spec.num_labels, task_type=spec.type)
    path = write_head_analysis(loaded, spec, bc.load_tokenizer(data.model), out, examples=examples, split=split,
                               max_length=max_length, keep_one=keep_one, overwrite=overwrite)
    console.print(f"[green]wrote[/] {path / 'heads.md'}")


@app.command()
def reproduce(
    claims: list[str] = typer.Option(["all"], "--claims", "-c", help="claim IDs 1-15 to rerun (repeat), or all"),
    task: list[str] = typer.Option(["rotten_tomatoes"], "--task", "-t",
                                   help="rotten_tomatoes, vitaminc or squad; repeat for several"),
    seeds: Optional[int] = typer.Option(None, min=1, max=10, help="teachers and variants per claim (default: 3, "
                                                                  "--quick: 1)"),
    quick: bool = typer.Option(False, "--quick", help="1 seed, a tenth of each claim's training, 500 test "
                                                      "examples: about 30 minutes on 2 cores; every row says so"),
    model: str = ModelOpt,
    out: Path = typer.Option(Path("reproduction"), "--out", "-o", help="directory for REPRODUCTION.md, "
                                                                        "reproduction.json and the plots"),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Rerun the survey's claims on real models and judge each (holds / partly / does not hold) with paired
    tests that respect seed noise. Resumable: built variants and measured results are cached."""
    from dataclasses import replace

    from bertcompress.reproduce.runner import ReproduceOptions, reproduce as run_reproduce, select_claims
    from bertcompress.reproduce.spec import FULL, QUICK

    chosen = select_claims([c for item in claims for c in item.split(",") if c])
    check_output_path(out, overwrite)
    check_source(model)
    budget = QUICK if quick else FULL
    if seeds is not None:
        budget = replace(budget, seeds=tuple(range(seeds)))
    run_reproduce(ReproduceOptions(chosen, task, budget, model, out, overwrite), console)


def main(argv: list[str] | None = None) -> None:
    """Entry point: every failure becomes one `error:` line; `--debug` (anywhere) adds the traceback."""
    from transformers.utils import logging as hf_logging

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        result = app(args=args, prog_name="bertcompress", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except click.exceptions.Exit as done:
        code = done.exit_code
    except (KeyboardInterrupt, click.exceptions.Abort):
        sys.stderr.write("interrupted; rerun the same command to resume\n")
        code = INTERRUPTED
    except Exception as error:  # noqa: BLE001 - the one place every failure is turned into one line
        code = report(error, debug)
    sys.exit(code)


if __name__ == "__main__":
    main()
