"""``databazaar align multimodal*``: data, base model, the two MLAN phases, evaluation.

* ``align multimodal-data OUT``: write the rendered data set (captions, instructions,
  held-out evaluation files, PNG images);
* ``align multimodal-init OUT``: a tiny LLaVA whose language model is pretrained on plain
  text (the stand-in for a pretrained MLLM; a real LLaVA folder can be used instead);
* ``align multimodal-align MODEL_DIR CAPTIONS.jsonl -o OUT``: phase 1, projector only;
* ``align multimodal MODEL_DIR --text TEXT.jsonl [--vision VL.jsonl] [--ratio R] -o OUT``:
  phase 2, instruction tuning on a text / vision mixture (vision tower frozen);
* ``align multimodal-eval MODEL_DIR [--language EVAL.jsonl] [--vision EVAL.jsonl]``:
  zero-shot per-task scores of both modalities.

Bad input (a missing or non-image image file, a ratio outside [0, 1], text-only data
given to phase 1, a malformed line) is one ``error:`` line with exit code 2, and nothing
is written: the data is checked in full before training and the model folder is
written in one step at the end.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

_Steps = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option("--steps", help="optimizer steps (overrides --epochs)"),
]
_Threads = Annotated[Optional[int], typer.Option("--threads")]  # noqa: UP045
_Quiet = Annotated[bool, typer.Option("--quiet", "-q")]


def _tune_config(
    lr: float, batch_size: int, epochs: float, steps: int | None, seed: int, threads: int | None
) -> Any:
    from databazaar.alignment.multimodal.train import TuneConfig

    cfg = TuneConfig(
        lr=lr,
        batch_size=batch_size,
        epochs=epochs,
        max_steps=steps,
        random_state=seed,
        num_threads=threads,
    )
    cfg.validate()
    return cfg


def _report(what: str, res: Any, out: Path) -> None:
    typer.echo(
        f"{what}: {res.steps} steps on {res.n_examples} examples ({res.n_text_examples} text, "
        f"{res.n_vision_examples} vision); tokens seen {res.tokens} ({res.text_tokens} text + "
        f"{res.image_tokens} image); last loss {res.train_loss[-1]:.4f}; saved to {out}"
    )


def data_cmd(
    output: Annotated[Path, typer.Argument(help="folder to write the data set to")],
    captions: Annotated[int, typer.Option("--captions", help="phase-1 image-caption pairs")] = 2000,
    text: Annotated[int, typer.Option("--text", help="text instructions per family")] = 400,
    vision: Annotated[int, typer.Option("--vision", help="vision instructions per type")] = 600,
    n_eval: Annotated[int, typer.Option("--eval", help="held-out examples per family")] = 50,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    quiet: _Quiet = False,
) -> None:
    """Write rendered scenes and charts with captions, instructions and held-out eval files."""
    from databazaar.alignment.multimodal.build import DataConfig, build_data
    from databazaar.core.progress import progress_bar

    cfg = DataConfig(captions, text, vision, n_eval, random_state=seed)
    cfg.validate()
    total = captions + 3 * vision + 5 * n_eval
    with progress_bar("rendering", total, quiet=quiet) as advance:
        counts = build_data(output, cfg, progress=advance)
    typer.echo(f"wrote {output}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


def init_cmd(
    output: Annotated[Path, typer.Argument(help="folder for the new model")],
    steps: Annotated[int, typer.Option("--steps", help="pretraining steps of the LM")] = 1200,
    docs: Annotated[int, typer.Option("--docs", help="pretraining documents per family")] = 600,
    lr: Annotated[float, typer.Option("--lr")] = 2e-3,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    threads: _Threads = None,
    quiet: _Quiet = False,
) -> None:
    """Build a tiny LLaVA (CLIP vision, MLP projector, Llama) and pretrain its LM on plain text."""
    from databazaar.alignment.multimodal.build import BaseConfig, build_base
    from databazaar.alignment.multimodal.model import MultimodalConfig, save_multimodal
    from databazaar.core.io import staged_dir
    from databazaar.core.progress import progress_bar

    cfg = BaseConfig(n_docs_per_family=docs, steps=steps, lr=lr, random_state=seed)
    cfg.validate()
    with progress_bar("pretraining", steps, quiet=quiet) as advance:
        model, proc, info = build_base(
            MultimodalConfig(), cfg, num_threads=threads, progress=advance
        )
    with staged_dir(output) as tmp:
        save_multimodal(model, proc, tmp, history=[{"phase": "pretrain", **info}])
    typer.echo(
        f"base model: {info['steps']} pretraining steps, final loss {info['final_loss']:.4f}; "
        f"saved to {output}"
    )


def align_cmd(
    model_dir: Annotated[Path, typer.Argument(help="LLaVA model folder")],
    captions: Annotated[Path, typer.Argument(help="image-caption pairs (JSON lines)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="folder for the model")],
    lr: Annotated[float, typer.Option("--lr")] = 1e-3,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 32,
    epochs: Annotated[float, typer.Option("--epochs")] = 1.0,
    steps: _Steps = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    threads: _Threads = None,
    quiet: _Quiet = False,
) -> None:
    """Phase 1: align the projector on image-caption pairs, everything else frozen."""
    from databazaar.alignment.multimodal.data import read_examples
    from databazaar.alignment.multimodal.model import load_multimodal, read_meta
    from databazaar.alignment.multimodal.train import align_projector, save_tuned
    from databazaar.core.progress import progress_bar

    cfg = _tune_config(lr, batch_size, epochs, steps, seed, threads)
    examples = read_examples(captions, "captions")
    model, proc = load_multimodal(model_dir)
    total = cfg.max_steps or -(-int(len(examples) * cfg.epochs) // cfg.batch_size)
    with progress_bar("phase 1", total, quiet=quiet) as advance:
        res = align_projector(model, proc, examples, config=cfg, progress=advance)
    history = read_meta(model_dir).get("history", [])
    save_tuned(model, proc, output, res, history=history, config=cfg.to_dict(), data=str(captions))
    _report("phase 1 (projector)", res, output)


def tune_cmd(
    model_dir: Annotated[Path, typer.Argument(help="LLaVA model folder (after phase 1)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="folder for the model")],
    text: Annotated[Path, typer.Option("--text", help="text instructions (JSON lines)")],
    vision: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--vision", help="vision-language instructions (JSON lines)"),
    ] = None,
    ratio: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(
            "--ratio",
            help="share of vision examples in [0, 1] (default: 0 without "
            "--vision, else the share the two files give)",
        ),
    ] = None,
    examples: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            "--examples", help="examples in the mixture (default: as many as the data allows)"
        ),
    ] = None,
    lr: Annotated[float, typer.Option("--lr")] = 1e-3,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 32,
    epochs: Annotated[float, typer.Option("--epochs")] = 1.0,
    steps: _Steps = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    threads: _Threads = None,
    quiet: _Quiet = False,
) -> None:
    """Phase 2: instruction-tune on text-only, vision or mixed data (vision tower frozen)."""
    from databazaar.alignment.multimodal.data import mix_examples, read_examples
    from databazaar.alignment.multimodal.model import load_multimodal, read_meta
    from databazaar.alignment.multimodal.train import instruction_tune, save_tuned
    from databazaar.core.errors import InvalidInput
    from databazaar.core.progress import progress_bar

    if ratio is not None and not 0.0 <= ratio <= 1.0:
        raise InvalidInput(f"--ratio must be in [0, 1], got {ratio}")
    if ratio is not None and ratio > 0 and vision is None:
        raise InvalidInput(
            f"--ratio {ratio} asks for vision examples", hint="pass --vision VL.jsonl"
        )
    cfg = _tune_config(lr, batch_size, epochs, steps, seed, threads)
    text_ex = read_examples(text, "text")
    vis_ex = read_examples(vision, "vision") if vision is not None else []
    share = ratio if ratio is not None else len(vis_ex) / (len(vis_ex) + len(text_ex))
    mix = mix_examples(text_ex, vis_ex, ratio=share, n_examples=examples, random_state=seed)
    model, proc = load_multimodal(model_dir)
    total = cfg.max_steps or -(-int(len(mix) * cfg.epochs) // cfg.batch_size)
    with progress_bar("phase 2", total, quiet=quiet) as advance:
        res = instruction_tune(model, proc, mix, config=cfg, progress=advance)
    history = read_meta(model_dir).get("history", [])
    save_tuned(
        model,
        proc,
        output,
        res,
        history=history,
        config=cfg.to_dict(),
        mixture={"ratio": share, "text": str(text), "vision": str(vision) if vision else None},
    )
    _report(f"phase 2 (vision ratio {share:.3f})", res, output)


def eval_cmd(
    model_dir: Annotated[Path, typer.Argument(help="LLaVA model folder")],
    language: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--language", help="language evaluation examples (JSON lines)"),
    ] = None,
    vision: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--vision", help="vision evaluation examples (JSON lines)"),
    ] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens")] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="print the scores as JSON")] = False,
    threads: _Threads = None,
    quiet: _Quiet = False,
) -> None:
    """Zero-shot per-task scores on language and vision examples (greedy, exact match)."""
    from databazaar.alignment.multimodal.data import read_examples
    from databazaar.alignment.multimodal.evaluate import evaluate_examples
    from databazaar.alignment.multimodal.model import load_multimodal
    from databazaar.core.errors import InvalidInput
    from databazaar.core.progress import progress_bar
    from databazaar.lm.train import set_threads

    if language is None and vision is None:
        raise InvalidInput("nothing to evaluate", hint="pass --language and/or --vision")
    if max_new_tokens < 1:
        raise InvalidInput(f"--max-new-tokens must be at least 1, got {max_new_tokens}")
    examples = []
    for path in (language, vision):
        if path is not None:
            examples += read_examples(path, "eval")
    model, proc = load_multimodal(model_dir)
    set_threads(threads)
    with progress_bar("answering", len(examples), quiet=quiet) as advance:
        res = evaluate_examples(
            model, proc, examples, max_new_tokens=max_new_tokens, progress=advance
        )
    if as_json:
        typer.echo(json.dumps({k: v for k, v in res.items() if k != "samples"}, indent=1))
        return
    typer.echo(f"{'task':<22} {'modality':<9} {'n':>4}  exact match")
    for fam, s in res["families"].items():
        typer.echo(f"{fam:<22} {s['modality']:<9} {s['n']:>4}  {s['exact_match']:.3f}")
    for mod in ("language", "vision"):
        if res[mod] is not None:
            typer.echo(f"{mod} score (mean over its tasks): {res[mod]:.3f}")


def register(app: typer.Typer) -> None:
    """Add the multimodal commands to the ``align`` group."""
    app.command("multimodal-data")(data_cmd)
    app.command("multimodal-init")(init_cmd)
    app.command("multimodal-align")(align_cmd)
    app.command("multimodal")(tune_cmd)
    app.command("multimodal-eval")(eval_cmd)
