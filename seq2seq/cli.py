"""The `seq2seq` command: parse options, make one call into the `seq2seq` package, print the result."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, cast

import typer
from rich.console import Console
from rich.progress import Progress

from seq2seq.config import Penalty, Stop, load_config
from seq2seq.errors import Seq2SeqError
from seq2seq.outputs import NamedWriter, atomic_output, os_error_line, refuse_overwriting_inputs
from seq2seq.runtime import tune_allocator
from seq2seq.textio import LineStats, count_lines, iter_lines, read_lines

# The package's modules that import torch, sacrebleu or matplotlib load inside the commands that use them,
# so `seq2seq --help` answers at once.
if TYPE_CHECKING:
    from seq2seq.translate import Translation, Translator


app = typer.Typer(
    help="Recurrent (LSTM/GRU) encoder-decoder neural machine translation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a recipe key, e.g. --set train.lr=0.0005 (repeatable)."),
]
BF16_HELP = "Decode with bf16 matmuls (fast on CPUs with AVX512-BF16/AMX and on GPUs)."
DECODERS_HELP = "Searches side by side on the CPU, each a process of one thread (0: one per core; 1 on GPU)."
ShortlistOption = Annotated[
    bool | None,
    typer.Option("--shortlist/--no-shortlist", help="Output layer over the model's vocabulary shortlist "
                 "only (faster) [default: when the model has one, see decode.shortlist]."),
]  # fmt: skip
# --penalty and --stop are plain strings for typer (which would print a boxed usage error for a bad
# choice): `SearchOptions` checks them with a one-line error naming the option.
StopOption = Annotated[
    str | None,
    typer.Option(help="Beam search, exact: until no hypothesis can win; early: also stop a sentence once a "
                 "step's best candidate ends, as OpenNMT-py does (faster) [default: recipe's]."),
]  # fmt: skip
EVAL_METRICS = "bleu,chrf,ter"
"""`eval --metrics` default: every metric of `seq2seq.evaluate.METRICS` (not imported here: sacrebleu)."""
RecipeArg = Annotated[Path, typer.Argument(help="Recipe YAML file (see recipes/).", show_default=False)]


def _err(line: str) -> None:
    typer.echo(line, err=True)


def _print(text: str) -> None:
    """A result on stdout; a failed write (a full disk, a closed pipe) is a one-line error naming it."""
    try:
        typer.echo(text)
    except OSError as exc:
        raise Seq2SeqError(os_error_line(exc, "<stdout>")) from None


def _check_finite(**options: float | None) -> None:
    """NaN or infinity for a float option is an error naming it (`length_penalty` -> `--length-penalty`)."""
    for name, value in options.items():
        if value is not None and not math.isfinite(value):
            raise Seq2SeqError(f"--{name.replace('_', '-')}: must be a finite number, got {value}")


@contextlib.contextmanager
def _user_errors(ctx: typer.Context) -> Iterator[None]:
    """One line and a non-zero exit for the user's mistakes; a traceback only with --debug."""
    debug = bool(ctx.obj and ctx.obj.get("debug"))
    try:
        yield
    except Seq2SeqError as exc:
        if debug:
            raise
        _err(f"error: {exc}")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        if debug:
            raise
        _err("interrupted")
        raise typer.Exit(130) from None
    except OSError as exc:
        if debug:
            raise
        _err(
            f"error: {exc.filename}: {exc.strerror or exc}"
            if exc.filename
            else f"error: {exc.strerror or exc}"
        )
        raise typer.Exit(2) from None


@app.callback()
def main_options(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    """Recurrent (LSTM/GRU) encoder-decoder neural machine translation.

    preprocess -> train -> translate -> eval. Every command takes --help.
    """
    ctx.obj = {"debug": debug}
    tune_allocator()


@app.command()
def preprocess(
    ctx: typer.Context,
    recipe: RecipeArg,
    out: Annotated[
        Path | None, typer.Option(help="Output directory [default: runs/RECIPE-NAME/data].")
    ] = None,
    set_: SetOption = None,
    force: Annotated[bool, typer.Option(help="Rebuild even when the output is up to date.")] = False,
) -> None:
    """Clean the recipe's corpus, train SentencePiece and write the encoded splits (Arrow) + manifest."""
    with _user_errors(ctx):
        cfg = load_config(recipe, set_ or [])
        out_dir = out or Path("runs") / recipe.stem / "data"
        if out_dir.exists() and not out_dir.is_dir():
            raise Seq2SeqError(f"--out {out_dir}: is a file, expected a directory")
        from seq2seq.data import preprocess as run_preprocess  # imports `datasets`: only when needed
        from seq2seq.data import report_table

        result = run_preprocess(cfg, out_dir, log=_err, force=force)
        if not result.cached:
            _print(report_table(result.manifest))
            vocab = result.manifest["vocab"]
            _print(
                f"vocabulary: source {vocab['src']}, target {vocab['tgt']}; "
                f"{result.manifest['seconds']:.1f} s"
            )
        _print(f"preprocessed data: {out_dir}")


@app.command()
def train(
    ctx: typer.Context,
    recipe: RecipeArg,
    out: Annotated[
        Path | None,
        typer.Option(help="Run directory [default: runs/RECIPE-NAME]. An existing one is resumed."),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(help="Preprocessed data directory [default: OUT/data]; built there if missing."),
    ] = None,
    set_: SetOption = None,
    restart: Annotated[bool, typer.Option(help="Start over in an existing run directory.")] = False,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
    nproc: Annotated[
        int,
        typer.Option(
            min=1,
            help="Train with N data-parallel processes on this machine (torchrun's launcher; "
            "one thread each unless OMP_NUM_THREADS is set).",
        ),
    ] = 1,
) -> None:
    """Train an attentional encoder-decoder; resumes when OUT already holds a run.

    Exit status: 0 finished; 75 stopped by SIGTERM, SIGUSR1 or Ctrl-C after saving checkpoints/last.pt
    (run the printed command to resume); 2 an error (one line); 130 a second Ctrl-C.
    """
    with _user_errors(ctx):
        from seq2seq.distributed import is_main_process, launch
        from seq2seq.train import EXIT_INTERRUPTED
        from seq2seq.train import train as run_train

        cfg = load_config(recipe, set_ or [])
        run_dir = out or Path("runs") / recipe.stem
        if nproc > 1 and "RANK" not in os.environ:
            argv = ["-m", "seq2seq", "train", str(recipe), "--out", str(run_dir)]
            argv += [*(["--data", str(data)] if data else []), *(f"--set={s}" for s in set_ or [])]
            argv += [*(["--restart"] if restart else []), *([] if progress else ["--no-progress"])]
            raise typer.Exit(launch(nproc, argv))
        result = run_train(cfg, run_dir, data, restart=restart, log=_err, show_progress=progress)
    if result.interrupted:
        resume = ["seq2seq", "train", str(recipe), "--out", str(run_dir)]
        resume += [*(["--data", str(data)] if data else []), *(f"--set={s}" for s in set_ or [])]
        resume += ["--nproc", os.environ["WORLD_SIZE"]] if int(os.environ.get("WORLD_SIZE", "1")) > 1 else []
        if is_main_process():
            _err(f"interrupted, resumable: {shlex.join(resume)}")
        raise typer.Exit(EXIT_INTERRUPTED)
    if is_main_process():
        typer.echo(f"best model: {result.best_checkpoint}")


def _check_decoders(decoders: int) -> None:
    if decoders < 0:
        raise Seq2SeqError(f"--decoders: must be 0 (one per CPU core) or more, got {decoders}")


def _load_translator(
    model: list[Path], device: str, quantize: str, bf16: bool, decoders: int = 1
) -> Translator:
    from seq2seq.search_processes import default_decoders
    from seq2seq.translate import Translator

    _check_decoders(decoders)
    translator = Translator.from_checkpoint(model, device, quantize, bf16)
    if bf16 and not translator.bf16:
        _err(f"warning: {translator.device} has no native bf16 arithmetic: --bf16 ignored, decoding in fp32")
    translator.decoders = decoders or default_decoders(translator.device)
    return translator


def _open_input(path: Path | None) -> tuple[IO[bytes], str]:
    if path is None or str(path) == "-":
        return sys.stdin.buffer, "<stdin>"
    if path.is_dir():
        raise Seq2SeqError(f"{path}: is a directory, expected a text file (one sentence per line)")
    if not path.is_file():
        raise Seq2SeqError(f"{path}: input file not found")
    return open(path, "rb"), str(path)


def _format(translation: Translation, index: int, fmt: str) -> str:
    if fmt == "plain":
        return translation.text
    return json.dumps(
        {
            "line": index + 1,
            "source": translation.source,
            "translation": translation.text,
            "score": round(translation.candidates[0].score, 4) if translation.candidates else None,
            "n_best": [
                {"text": c.text, "score": round(c.score, 4), "log_prob": round(c.log_prob, 4)}
                for c in translation.candidates
            ],
            "time_ms": round(1000 * translation.seconds, 3),
        },
        ensure_ascii=False,
    )


def _alignment(translation: Translation, index: int) -> str:
    """One JSON line: source and target pieces (with </s>) and the best candidate's attention matrix."""
    best = translation.candidates[0] if translation.candidates else None
    return json.dumps(
        {
            "line": index + 1,
            "source_tokens": [*translation.source_tokens, "</s>"] if best else [],
            "target_tokens": [*best.tokens, "</s>"] if best else [],
            "attention": [[round(w, 4) for w in row] for row in best.attention.tolist()]
            if best is not None and best.attention is not None
            else [],
        },
        ensure_ascii=False,
    )


@app.command()
def translate(
    ctx: typer.Context,
    input_: Annotated[
        Path | None,
        typer.Argument(
            metavar="[INPUT]", help="Text file, one sentence per line; '-' or nothing reads stdin."
        ),
    ] = None,
    model: Annotated[
        list[Path] | None,
        typer.Option("--model", "-m", help="Checkpoint (.pt) written by train; repeat it for an ensemble."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Output file [default: stdout].")
    ] = None,
    beam: Annotated[int | None, typer.Option(help="Beam size; 1 = greedy [default: the recipe's].")] = None,
    n_best: Annotated[int, typer.Option(help="Hypotheses per line (jsonl output).")] = 1,
    length_penalty: Annotated[
        float | None, typer.Option(help="Length penalty alpha; 0 = raw log-probability [default: recipe's].")
    ] = None,
    penalty: Annotated[
        str | None,
        typer.Option(help="gnmt: score / ((5+len)/6)^alpha; length: score / len^alpha [default: recipe's]."),
    ] = None,
    stop: StopOption = None,
    max_len_a: Annotated[
        float | None, typer.Option(help="Max output length = a * source length + b.")
    ] = None,
    max_len_b: Annotated[int | None, typer.Option(help="See --max-len-a.")] = None,
    min_len: Annotated[int | None, typer.Option(help="Min output length in subwords.")] = None,
    no_unk: Annotated[bool, typer.Option("--no-unk", help="Never emit the unknown token.")] = False,
    batch_tokens: Annotated[
        int | None, typer.Option(help="Source tokens x beam size per batch [default: the recipe's, 12000].")
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="plain, or jsonl (score, n-best, time per line).")
    ] = "plain",
    attention: Annotated[
        Path | None, typer.Option(help="Also write the best hypothesis' attention here (JSON Lines).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    quantize: Annotated[str, typer.Option(help="int8: dynamic int8 quantization for CPU (faster).")] = "",
    bf16: Annotated[bool, typer.Option("--bf16", help=BF16_HELP)] = False,
    chunk_lines: Annotated[int, typer.Option(help="Lines read before translating (1 on a terminal).")] = 1000,
    sample: Annotated[bool, typer.Option("--sample", help="Sample translations, not search.")] = False,
    temperature: Annotated[float, typer.Option(help="With --sample: < 1 sharper, > 1 flatter.")] = 1.0,
    top_k: Annotated[int, typer.Option(help="With --sample: only the k most probable tokens; 0 = all.")] = 0,
    top_p: Annotated[
        float, typer.Option(help="With --sample: only the most probable tokens up to this mass (nucleus).")
    ] = 1.0,
    seed: Annotated[int, typer.Option(help="With --sample: random seed (same seed, same samples).")] = 0,
    n_samples: Annotated[int, typer.Option(help="With --sample: samples per line (jsonl n_best).")] = 1,
    shortlist: ShortlistOption = None,
    decoders: Annotated[int, typer.Option(help=DECODERS_HELP)] = 0,
) -> None:
    """Translate text: exactly one output line per input line, in order."""
    with _user_errors(ctx):
        if sample:
            n_best = n_samples
        if fmt not in ("plain", "jsonl"):
            raise Seq2SeqError(f"--format: {fmt!r} is not one of 'plain', 'jsonl'")
        if n_best > 1 and fmt == "plain":
            raise Seq2SeqError(f"{'--n-samples' if sample else '--n-best'} > 1 needs --format jsonl")
        if not model:
            raise Seq2SeqError(
                "--model: give the checkpoint to translate with, e.g. runs/NAME/checkpoints/best.pt"
            )
        _check_finite(length_penalty=length_penalty, max_len_a=max_len_a)
        stdin = Path("/dev/stdin") if input_ is None or str(input_) == "-" else None  # `-o x < x`
        refuse_overwriting_inputs([("--output", output), ("--attention", attention)], [input_, stdin, *model])
        translator = _load_translator(model, device, quantize, bf16, decoders)
        opts = translator.options(
            beam=beam, n_best=n_best, length_penalty=length_penalty, max_len_a=max_len_a, max_len_b=max_len_b,
            min_len=min_len, block_unk=no_unk, attention=attention is not None,
            penalty=cast(Penalty | None, penalty), sample=sample, temperature=temperature,
            top_k=top_k, top_p=top_p, seed=seed, shortlist=shortlist, stop=cast(Stop | None, stop),
        )  # fmt: skip
        stats = LineStats()
        start = time.perf_counter()
        console = Console(file=sys.stderr)
        with contextlib.ExitStack() as stack:
            stream, name = _open_input(input_)
            if stream is not sys.stdin.buffer:
                stack.enter_context(stream)
            stdout = NamedWriter(sys.stdout, "<stdout>")
            sink = stack.enter_context(atomic_output(output)) if output else stdout
            align = stack.enter_context(atomic_output(attention)) if attention else None
            interactive = stream is sys.stdin.buffer and sys.stdin.isatty()
            show_bar = console.is_terminal and stream is not sys.stdin.buffer and output is not None
            bar = stack.enter_context(Progress(console=console, disable=not show_bar, transient=True))
            task = bar.add_task("translate", total=count_lines(Path(name)) if show_bar else None)
            lines = iter_lines(stream, name, replace_invalid=True, stats=stats)
            results = translator.translate_stream(
                lines, opts, 1 if interactive else chunk_lines, batch_tokens
            )
            for i, translation in enumerate(results):
                sink.write(_format(translation, i, fmt) + "\n")
                if align is not None:
                    align.write(_alignment(translation, i) + "\n")
                if interactive:
                    sink.flush()
                bar.advance(task)
            sink.flush()
        seconds = time.perf_counter() - start
        if stats.invalid_utf8:
            _err(f"warning: {stats.invalid_utf8} line(s) of {name} had invalid UTF-8 (replaced with U+FFFD)")
        if translator.stats.truncated:
            limit = translator.cfg.decode.max_src_len
            _err(f"warning: {translator.stats.truncated} line(s) longer than {limit} subwords were truncated")
        where = f" -> {output}" if output else ""
        where += f" (attention: {attention})" if attention else ""
        how = f"{opts.n_best} sample(s) each" if opts.sample else f"beam {opts.beam}"
        _err(f"translated {stats.lines} line(s) in {seconds:.1f} s ({how}){where}")


@app.command("eval")
def evaluate(
    ctx: typer.Context,
    ref: Annotated[Path, typer.Option(help="Reference file, one sentence per line.")] = Path(),
    hyp: Annotated[Path | None, typer.Option(help="Hypothesis file to score.")] = None,
    model: Annotated[
        list[Path] | None,
        typer.Option("--model", "-m", help="Checkpoint: translate --src, then score (repeat: an ensemble)."),
    ] = None,
    src: Annotated[Path | None, typer.Option(help="Source file to translate with --model.")] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="With --model: also write the translations here."),
    ] = None,
    beam: Annotated[int | None, typer.Option(help="With --model: beam size (1 = greedy).")] = None,
    stop: StopOption = None,
    metrics: Annotated[str, typer.Option(help="Comma-separated: bleu, chrf, ter.")] = EVAL_METRICS,
    lowercase: Annotated[bool, typer.Option(help="Case-insensitive scores.")] = False,
    tokenize: Annotated[str | None, typer.Option(help="BLEU tokenizer (sacrebleu's; default 13a).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
    device: Annotated[str, typer.Option(help="With --model: auto, cpu or cuda.")] = "auto",
    quantize: Annotated[
        str, typer.Option(help="With --model: int8 for dynamic int8 quantization (CPU).")
    ] = "",
    bf16: Annotated[bool, typer.Option("--bf16", help="With --model: " + BF16_HELP)] = False,
    shortlist: ShortlistOption = None,
    decoders: Annotated[int, typer.Option(help="With --model: " + DECODERS_HELP)] = 0,
) -> None:
    """Score translations with sacrebleu (BLEU, chrF, TER) and print each metric's signature."""
    with _user_errors(ctx):
        from seq2seq.evaluate import parse_metrics, require_lines, score_corpus, translate_and_score

        if str(ref) in ("", "."):
            raise Seq2SeqError("--ref: give the reference file")
        if fmt not in ("table", "json"):
            raise Seq2SeqError(f"--format: {fmt!r} is not one of 'table', 'json'")
        if (hyp is None) == (not model):
            raise Seq2SeqError("give either --hyp FILE, or --model CKPT with --src FILE")
        names = parse_metrics(metrics)
        refuse_overwriting_inputs([("--output", output)], [ref, hyp, src, *(model or [])])
        refs = read_lines(ref)
        require_lines(refs, str(ref))  # before loading a model
        if model:
            if src is None:
                raise Seq2SeqError("--model needs --src FILE (the source side of --ref)")
            translator = _load_translator(model, device, quantize, bf16, decoders)
            opts = translator.options(beam=beam, shortlist=shortlist, stop=cast(Stop | None, stop))
            with contextlib.ExitStack() as stack:  # an unwritable --output fails before translating
                out = stack.enter_context(atomic_output(output)) if output is not None else None
                result = translate_and_score(translator, src, ref, names, opts, lowercase, tokenize)
                n = len(result.translations)
                _err(f"translated {n} lines in {result.seconds:.1f} s (beam {opts.beam})")
                if out is not None:
                    out.write("".join(h + "\n" for h in result.translations))
            scores = result.scores
        else:
            assert hyp is not None
            scores = score_corpus(read_lines(hyp), refs, names, lowercase=lowercase,
                                  tokenize=tokenize, names=(str(hyp), str(ref)))  # fmt: skip
        if fmt == "json":
            _print(json.dumps([s.as_dict() for s in scores], indent=2))
        else:
            _print("\n".join(f"{s.text}\n    signature: {s.signature}" for s in scores))


@app.command("shortlist")
def shortlist_command(
    ctx: typer.Context,
    model: Annotated[Path, typer.Argument(help="Checkpoint (.pt) written by train.", show_default=False)],
    data: Annotated[Path, typer.Option(help="The run's preprocessed data (RUN_DIR/data).")] = Path(),
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Checkpoint to write [default: MODEL, in place].")
    ] = None,
    per_source: Annotated[
        int | None, typer.Option(help="Target subwords kept per source subword [default: the recipe's].")
    ] = None,
    frequent: Annotated[
        int | None, typer.Option(help="Most frequent target subwords always kept [default: the recipe's].")
    ] = None,
) -> None:
    """Add a vocabulary shortlist (built from the training data) to a checkpoint; train stores one itself."""
    with _user_errors(ctx):
        from seq2seq.shortlist import add_shortlist

        if str(data) in ("", "."):
            raise Seq2SeqError("--data: give the run's preprocessed data directory (RUN_DIR/data)")
        done = add_shortlist(model, data, output or model, per_source, frequent)
        sl, cov = done.shortlist, done.coverage
        fit = f"; a validation sentence allows {cov.size:,.0f} subwords and {cov.tokens:.2%} of its " \
              "reference's" if cov else ""  # fmt: skip
        _print(
            f"shortlist: {sl.per_source} target subwords per source subword + {sl.frequent.numel()} "
            f"always of {sl.tgt_vocab:,}{fit}; built in {done.seconds:.1f} s -> {output or model}"
        )


@app.command()
def score(
    ctx: typer.Context,
    model: Annotated[Path, typer.Option("--model", "-m", help="Checkpoint (.pt) written by train.")] = Path(),
    src: Annotated[Path, typer.Option(help="Source file, one sentence per line.")] = Path(),
    tgt: Annotated[Path, typer.Option(help="Translations to score, one per line of --src.")] = Path(),
    fmt: Annotated[
        str,
        typer.Option("--format", help="plain: log-prob, per token, normalised (tab-separated); or jsonl."),
    ] = "plain",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Output file [default: stdout].")
    ] = None,
    batch_tokens: Annotated[
        int | None, typer.Option(help="Tokens per batch [default: the recipe's train.batch_tokens].")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """The model's log-probability of given translations (forced decoding), one line per pair."""
    with _user_errors(ctx):
        from seq2seq.scoring import score_files

        if fmt not in ("plain", "jsonl"):
            raise Seq2SeqError(f"--format: {fmt!r} is not one of 'plain', 'jsonl'")
        for name, value in (("--model", model), ("--src", src), ("--tgt", tgt)):
            if str(value) in ("", "."):
                raise Seq2SeqError(f"{name}: give the file (score --model CKPT --src FILE --tgt FILE)")
        refuse_overwriting_inputs([("--output", output)], [model, src, tgt])
        translator = _load_translator([model], device, "", False)
        stdout = NamedWriter(sys.stdout, "<stdout>")
        with atomic_output(output) if output else contextlib.nullcontext(stdout) as sink:
            scores = score_files(translator, src, tgt, batch_tokens)  # an unwritable --output fails first
            for i, s in enumerate(scores):
                if fmt == "plain":
                    sink.write(f"{s.log_prob:.4f}\t{s.per_token:.4f}\t{s.normalized:.4f}\n")
                else:
                    sink.write(json.dumps({"line": i + 1, **s.as_dict()}) + "\n")
        _err(f"scored {len(scores)} pair(s)" + (f" -> {output}" if output else ""))


@app.command()
def plot(
    ctx: typer.Context,
    runs: Annotated[list[Path], typer.Argument(help="Run directories (each with metrics.jsonl).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG to write.")] = Path("curves.png"),
) -> None:
    """Learning curves (losses, BLEU against updates and minutes, learning rate) of runs, as a PNG."""
    with _user_errors(ctx):
        from seq2seq.plot import metrics_path, plot_runs

        refuse_overwriting_inputs([("--output", output)], [metrics_path(run) for run in runs])
        _print(f"learning curves of {len(runs)} run(s): {plot_runs(runs, output)}")


@app.command()
def export(
    ctx: typer.Context,
    checkpoint: Annotated[
        Path, typer.Argument(help="Checkpoint (.pt) to export, e.g. runs/NAME/checkpoints/best.pt.")
    ],
    out_dir: Annotated[Path, typer.Argument(help="Folder to write (model.safetensors, config.json, ...).")],
) -> None:
    """A folder others load without pickle: safetensors weights, config.json, SentencePiece, model card."""
    with _user_errors(ctx):
        from seq2seq.export import export_model

        typer.echo(f"exported {checkpoint}: {export_model(checkpoint, out_dir)}")


@app.command()
def average(
    ctx: typer.Context,
    checkpoints: Annotated[
        list[Path], typer.Argument(help="Checkpoints of one run, e.g. runs/NAME/checkpoints/step-*.pt.")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the averaged model.")
    ] = Path(),
) -> None:
    """Average the weights of several checkpoints of one run into one model (often +0.5 BLEU)."""
    with _user_errors(ctx):
        from seq2seq.checkpoint import average_checkpoints, save_checkpoint

        if str(output) in ("", "."):
            raise Seq2SeqError("--output: give the file to write the averaged model to")
        refuse_overwriting_inputs([("--output", output)], checkpoints)
        save_checkpoint(output, average_checkpoints(checkpoints))
        _print(f"averaged {len(checkpoints)} checkpoints: {output}")


@app.command()
def bench(
    ctx: typer.Context,
    recipe: Annotated[
        Path | None,
        typer.Argument(
            help="Recipe to measure [default: generated Multi30k-sized "
            "data and the reference 7.6M-parameter model]."
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            "-m",
            help="Checkpoint for the decoding figures [default: the recipe's runs/NAME/checkpoints/best.pt].",
        ),
    ] = None,
    src: Annotated[
        Path | None, typer.Option(help="Source file to decode [default: the recipe's test source].")
    ] = None,
    ref: Annotated[
        Path | None,
        typer.Option(
            help="Reference for --src: adds BLEU to the decoding figures [default: the recipe's test target]."
        ),
    ] = None,
    data: Annotated[Path | None, typer.Option(help="Preprocessed data [default: runs/NAME/data].")] = None,
    steps: Annotated[int, typer.Option(help="Measured training updates.")] = 30,
    warmup: Annotated[int, typer.Option(help="Training updates before measuring.")] = 5,
    batch_tokens: Annotated[
        int | None, typer.Option(help="Tokens per training batch [default: the recipe's, or ~64 sentences].")
    ] = None,
    set_: SetOption = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the figures as JSON here.")
    ] = None,
) -> None:
    """Measure training and decoding speed, peak memory and the fraction of the machine's matmul peak."""
    with _user_errors(ctx):
        from seq2seq.bench import format_table, recipe_inputs, run_bench

        cfg = load_config(recipe, set_ or []) if recipe is not None else None
        if recipe is not None and cfg is not None:
            inputs = recipe_inputs(recipe, cfg, data, model, src, ref)
            data, model, src, ref = inputs.data, inputs.checkpoint, inputs.source, inputs.reference
        refuse_overwriting_inputs([("--json", json_out)], [recipe, model, src, ref])
        result = run_bench(cfg, data, model, src, ref, warmup=warmup, steps=steps, batch_tokens=batch_tokens,
                           device=device, log=_err)  # fmt: skip
        if model is None:
            _err("no checkpoint given: decoding not measured (pass --model CKPT --src FILE)")
        _print(format_table(result))
        if json_out is not None:
            with atomic_output(json_out) as out:
                out.write(result.to_json() + "\n")
            _err(f"figures written to {json_out}")


@app.command()
def inspect(
    ctx: typer.Context,
    text: Annotated[list[str] | None, typer.Argument(help="Sentences to inspect (or --input FILE).")] = None,
    model: Annotated[Path, typer.Option("--model", "-m", help="Checkpoint (.pt) written by train.")] = Path(),
    input_: Annotated[
        Path | None, typer.Option("--input", help="One sentence per line (corpus mode).")
    ] = None,
    target: Annotated[
        list[str] | None, typer.Option(help="Force this translation (one per TEXT; repeatable).")
    ] = None,
    ref: Annotated[
        Path | None, typer.Option(help="Force these translations, one line per input line.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Directory for index.html, PNGs and trace.npz.")] = Path(
        "inspect"
    ),
    beam: Annotated[int | None, typer.Option(help="Beam size of the model's own translation.")] = None,
    gradients: Annotated[
        bool, typer.Option("--gradients", help="Also ||dloss/dC_t||, ||dloss/dh_t|| per source position.")
    ] = False,
    figures: Annotated[int, typer.Option(help="Sentences that get their own figures and arrays.")] = 10,
    png: Annotated[
        str, typer.Option(help="PNG files: summary (attention, first layer, gradients), all or none.")
    ] = "summary",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "cpu",
) -> None:
    """Show the recurrent cells at work: gates, memory cell C_t, h_t and attention, token by token."""
    with _user_errors(ctx):
        from seq2seq.inspect.report import write_inspection
        from seq2seq.translate import Translator

        if str(model) in ("", "."):
            raise Seq2SeqError("--model: give the checkpoint to inspect, e.g. runs/NAME/checkpoints/best.pt")
        if target and ref:
            raise Seq2SeqError("--target and --ref both give targets: use one")
        sentences = [*(text or []), *(read_lines(input_, replace_invalid=True) if input_ else [])]
        targets = read_lines(ref, replace_invalid=True) if ref else target
        translator = Translator.from_checkpoint(model, device)
        report = write_inspection(
            translator, sentences, out, targets, beam, gradients, figures, str(model), png
        )
        for note in report.notes:
            _err(f"note: {note}")
        typer.echo(f"inspected {report.traced} sentence(s): {report.index} ({len(report.files)} files)")


@app.command()
def serve(
    ctx: typer.Context,
    model: Annotated[
        list[str],
        typer.Option("--model", "-m", help="CKPT or NAME=CKPT (repeatable; the first is the default)."),
    ],
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    api_key: Annotated[
        str,
        typer.Option(envvar="SEQ2SEQ_API_KEY", help="Require Authorization: Bearer KEY (all but /health)."),
    ] = "",
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body (413).")] = 1 << 20,
    max_lines: Annotated[int, typer.Option(help="Lines per request (422).")] = 256,
    max_line_chars: Annotated[int, typer.Option(help="Characters per line (422).")] = 2000,
    max_beam: Annotated[int, typer.Option(help="Largest beam a request may ask for (422).")] = 16,
    max_queue: Annotated[int, typer.Option(help="Requests waiting per model (503 when full).")] = 256,
    batch_tokens: Annotated[int, typer.Option(help="Source tokens x beam merged into one search.")] = 12000,
    max_wait_ms: Annotated[float, typer.Option(help="Wait for more requests to join a batch.")] = 5.0,
    decoders: Annotated[
        int,
        typer.Option(
            help="Batched searches side by side per model (0: one per CPU core, each a process; 1 on GPU)."
        ),
    ] = 0,
    request_timeout: Annotated[float, typer.Option(help="Seconds before a request gets 504.")] = 30.0,
    body_timeout: Annotated[float, typer.Option(help="Seconds to receive a body before 408.")] = 10.0,
    access_log: Annotated[bool, typer.Option(help="JSON-lines access log on stderr.")] = True,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    quantize: Annotated[str, typer.Option(help="int8: dynamic int8 quantization for CPU (faster).")] = "",
    bf16: Annotated[bool, typer.Option("--bf16", help=BF16_HELP)] = False,
) -> None:
    """Serve translations over HTTP with dynamic batching (POST /v1/translate, GET / for a page)."""
    with _user_errors(ctx):
        _check_finite(max_wait_ms=max_wait_ms, request_timeout=request_timeout, body_timeout=body_timeout)
        try:
            from seq2seq.serve import (
                ServeOptions,
                default_decoders,
                load_translators,
                parse_model_specs,
                run_server,
            )
        except ImportError as exc:
            raise Seq2SeqError(
                f"serve needs the serve extra ({exc.name} missing): pip install 'seq2seq[serve]'"
            ) from None
        _check_decoders(decoders)
        opts = ServeOptions(
            max_body_bytes=max_body_bytes, max_lines=max_lines, max_line_chars=max_line_chars,
            max_beam=max_beam, max_queue=max_queue, batch_tokens=batch_tokens, max_wait_ms=max_wait_ms,
            request_timeout_s=request_timeout, body_timeout_s=body_timeout, api_key=api_key,
            decoders=decoders or 1,
        )  # fmt: skip
        translators = load_translators(parse_model_specs(model), device, quantize, bf16)
        if not decoders:
            opts = dataclasses.replace(opts, decoders=default_decoders(translators.values()))
        if bf16 and not any(t.bf16 for t in translators.values()):
            _err("warning: no native bf16 arithmetic here: --bf16 ignored, decoding in fp32")
        if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
            _err(f"warning: listening on {host} without --api-key: anyone who can reach it can use it")
        _err(f"serving {', '.join(translators)} on http://{host}:{port} (SIGTERM or Ctrl-C to stop)")
        run_server(translators, host, port, opts, sys.stderr if access_log else None)
        _err("stopped")


def main() -> None:
    try:
        app()
    finally:
        _drop_unwritable_stdout()


def _drop_unwritable_stdout() -> None:
    """After stdout failed (a full disk, a closed pipe) the error was reported: send the unwritten rest to
    /dev/null so Python's own flush at exit adds no second message."""
    try:
        sys.stdout.flush()
    except OSError:
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    main()
