"""``databazaar lm``: use a causal LM saved in a local folder.

* ``generate MODEL_DIR PROMPT... [--chat | --messages FILE] [-n N] [--max-tokens N]
  [--temperature T] [--top-p P] [--seed S] [--stop STR] [--json] [--logprobs]`` prints
  one completion (or, with ``--chat``/``--messages``, one assistant answer) per sample,
  greedy by default; ``--json`` prints tokens and ids, ``--logprobs`` log-probabilities;
* ``serve MODEL_DIR [--host 127.0.0.1] [--port 8001] [--name NAME] [--api-key KEY]``
  serves it under the OpenAI API shapes (``/v1/completions``, ``/v1/chat/completions``,
  ``/v1/models``), so
  :class:`~databazaar.lm.openai_client.OpenAICompatibleBackend` and other OpenAI clients
  can use it.

``MODEL_DIR`` is a folder written by :func:`databazaar.lm.model.save_model` (for example
by ``databazaar mixture train``) or any local Hugging Face causal LM folder with its
tokenizer.  Only ``typer`` is imported at module level.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Optional

import typer

lm_app = typer.Typer(help="Fine-tune, evaluate, generate with or serve a causal LM (local folder).")


@lm_app.callback()
def _lm() -> None:
    """Generate with, or serve, a causal LM from a local folder."""


ModelDir = Annotated[
    Path,
    typer.Argument(help="model folder (config, weights and tokenizer)"),
]
Threads = Annotated[Optional[int], typer.Option("--threads", help="torch CPU threads")]  # noqa: UP045


def _backend(model_dir: Path, threads: int | None):  # type: ignore[no-untyped-def]
    from databazaar.lm.local_backend import LocalModelBackend

    return LocalModelBackend(model_dir, num_threads=threads)  # NotFound / InvalidInput


@lm_app.command("generate")
def generate_cmd(
    model_dir: ModelDir,
    prompts: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Argument(help="prompts (with --chat: one user message each)"),
    ] = None,
    chat: Annotated[
        bool, typer.Option("--chat", help="answer each PROMPT as a user message (chat template)")
    ] = False,
    messages: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--messages",
            help="conversations to answer (implies --chat): JSONL of {messages: [...]} or "
            "a JSON conversation or list of them",
        ),
    ] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="new tokens per sample")] = 32,
    temperature: Annotated[
        float, typer.Option("--temperature", help="0 is greedy; > 0 samples")
    ] = 0.0,
    top_p: Annotated[float, typer.Option("--top-p", help="nucleus sampling mass")] = 1.0,
    n: Annotated[int, typer.Option("-n", help="samples per prompt")] = 1,
    seed: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--seed", help="seed for sampling (prompt i uses seed + i)"),
    ] = None,
    stop: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--stop", help="stop sequence (repeatable)"),
    ] = None,
    logprobs: Annotated[
        bool, typer.Option("--logprobs", help="print token log-probabilities (implies --json)")
    ] = False,
    top_logprobs: Annotated[
        int, typer.Option("--top-logprobs", help="alternatives per token (implies --logprobs)")
    ] = 0,
    threads: Threads = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON object per sample (tokens, ids, finish)")
    ] = False,
    quiet: Quiet = False,  # Quiet is defined with the instruction-tuning commands below
) -> None:
    """Complete prompts, or answer conversations, and print the generations.

    Prints one line per sample (prompt-major: all samples of the first prompt first), or
    one JSON object per sample (:meth:`Generation.to_dict`) with ``--json``/``--logprobs``.
    """
    from databazaar.core.errors import InvalidInput
    from databazaar.core.progress import progress_bar
    from databazaar.lm.generate import SamplingParams, read_conversations

    params = SamplingParams(
        max_new_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        n=n,
        random_state=seed,
        stop=tuple(stop or ()),
        logprobs=logprobs or top_logprobs > 0,
        top_logprobs=top_logprobs,
    )
    if messages is not None and prompts:
        raise InvalidInput("pass either PROMPT arguments or --messages, not both")
    if messages is None and not prompts:
        raise InvalidInput("nothing to generate for", hint="pass PROMPT arguments or --messages")
    convs = None
    if messages is not None:
        convs = read_conversations(messages)
    elif chat:
        convs = [[{"role": "user", "content": p}] for p in prompts or []]
    backend = _backend(model_dir, threads)
    total = len(convs if convs is not None else prompts or [])
    with progress_bar("generating", total, quiet=quiet) as advance:
        if convs is not None:
            out = backend.chat(convs, params, progress=advance)
        else:
            out = backend.generate(prompts or [], params, progress=advance)
    for g in out:
        if not (as_json or params.logprobs):
            typer.echo(g.text)
            continue
        typer.echo(json.dumps(g.to_dict(), ensure_ascii=False))


@lm_app.command("serve")
def serve_cmd(
    model_dir: ModelDir,
    host: Annotated[str, typer.Option("--host", help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port")] = 8001,
    name: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--name", help="model name reported by /v1/models (default: folder)"),
    ] = None,
    threads: Threads = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level")] = "info",
    api_key: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--api-key",
            envvar="DATABAZAAR_LM_API_KEY",
            help="require Authorization: Bearer KEY on /v1 routes",
        ),
    ] = None,
) -> None:
    """Serve the model with OpenAI-compatible completion and chat endpoints."""
    import uvicorn

    from databazaar.core.errors import InvalidInput
    from databazaar.lm.serve import create_openai_app

    if not (0 < port < 65536):
        raise InvalidInput(f"port must be in 1..65535, got {port}")
    backend = _backend(model_dir, threads)
    app = create_openai_app(backend, model_name=name or model_dir.name, api_key=api_key)
    typer.echo(f"serving {model_dir} as {name or model_dir.name!r} on http://{host}:{port}/v1")
    uvicorn.run(app, host=host, port=port, log_level=log_level)


# ------------------------------------------------------------------ instruction tuning
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]
Taxonomy = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--taxonomy", help="AIR-Bench 2024 folder (risk_mapping.json)"),
]


TaskList = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--tasks", help="comma-separated families (default: the training ones)"),
]
PerFamily = Annotated[int, typer.Option("--n", help="examples per family")]
Paraphrased = Annotated[bool, typer.Option("--paraphrase", help="reword the prompts")]


def _families(tasks: str | None) -> list[str] | None:
    return [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None


def _examples(  # type: ignore[no-untyped-def]
    tasks: str | None, n: int, split: str, seed: int, paraphrased: bool, taxonomy: Path | None
):
    """Task examples for the ``tasks`` and ``eval`` commands."""
    from databazaar.lm.tasks import generate_tasks, paraphrase

    examples = generate_tasks(
        _families(tasks), n_per_family=n, split=split, random_state=seed, taxonomy=taxonomy
    )
    return [paraphrase(e, seed) for e in examples] if paraphrased else examples


@lm_app.command("sft")
def sft_cmd(
    model_dir: ModelDir,
    data: Annotated[Path, typer.Argument(help="chat JSONL: messages or prompt/completion")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="folder for the tuned model")],
    lora: Annotated[bool, typer.Option("--lora", help="train LoRA adapters only")] = False,
    epochs: Annotated[float, typer.Option("--epochs", help="passes over the data")] = 1.0,
    lr: Annotated[float, typer.Option("--lr", help="peak learning rate")] = 5e-4,
    batch_size: Annotated[int, typer.Option("--batch-size", help="conversations per step")] = 16,
    max_steps: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--max-steps", help="stop after N steps (overrides --epochs)"),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="random state (data order, LoRA init)")] = 0,
    checkpoint_every: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--checkpoint-every", help="save a checkpoint every N steps"),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="continue from the newest checkpoint in OUT_DIR")
    ] = False,
    eval_tasks: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--eval-tasks", help="comma-separated task families scored after training"),
    ] = None,
    chat_template: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--chat-template",
            help="Jinja file with {% generation %} markers, or 'default' (databazaar's); "
            "needed when the model's own template has no markers",
        ),
    ] = None,
    taxonomy: Taxonomy = None,
    threads: Threads = None,
    quiet: Quiet = False,
) -> None:
    """Fine-tune MODEL_DIR on DATA (loss on assistant turns) and save it to OUT_DIR."""
    from databazaar.core.errors import InvalidInput, NotFound
    from databazaar.core.progress import progress_bar
    from databazaar.lm.chat import read_chat_jsonl
    from databazaar.lm.model import load_model
    from databazaar.lm.sft import SFTConfig, sft
    from databazaar.lm.tasks import generate_tasks

    if out_dir.exists() and any(out_dir.iterdir()) and not resume:
        raise InvalidInput(
            f"output folder {out_dir} is not empty", hint="pick a new folder or pass --resume"
        )
    config = SFTConfig(
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        max_steps=max_steps,
        random_state=seed,
        lora=lora,
        checkpoint_every=checkpoint_every,
        num_threads=threads,
    )
    config.validate()
    template = chat_template
    if chat_template is not None and chat_template != "default":
        path = Path(chat_template)
        if not path.is_file():
            raise NotFound(f"chat template file not found: {path}")
        template = path.read_text(encoding="utf-8")
    conversations = read_chat_jsonl(data)
    model, tok = load_model(model_dir)
    fams = _families(eval_tasks)
    examples = (
        generate_tasks(fams, n_per_family=50, split="test", taxonomy=taxonomy) if fams else None
    )
    steps = max_steps or math.ceil(len(conversations) / batch_size * epochs)
    with progress_bar("fine-tuning", steps, quiet=quiet) as advance:
        _, result = sft(
            model,
            tok,
            conversations,
            out_dir,
            config=config,
            eval_examples=examples,
            progress=advance,
            resume=resume,
            chat_template=template,
        )
    typer.echo(
        f"trained {result.steps} steps on {result.n_conversations} conversations "
        f"({result.n_trainable_tokens} trainable tokens) in {result.seconds:.1f}s; "
        f"final loss {result.train_loss[-1]:.4f}; saved to {out_dir}"
    )
    if result.scores:
        _print_scores(result.scores)


def _print_scores(scores: dict) -> None:  # type: ignore[type-arg]
    for fam, m in scores["families"].items():
        cols = "  ".join(f"{k}={v:.3f}" for k, v in m.items() if k != "n")
        typer.echo(f"{fam:16s} n={m['n']:<4d} {cols}")
    for k in ("refusal_rate_unsafe", "answer_rate_benign"):
        if k in scores:
            typer.echo(f"{k}: {scores[k]:.3f}")


@lm_app.command("tasks")
def tasks_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL file to write")],
    tasks: TaskList = None,
    n: PerFamily = 100,
    split: Annotated[str, typer.Option("--split", help="train or test")] = "train",
    seed: Annotated[int, typer.Option("--seed", help="random state of the draw")] = 0,
    paraphrased: Paraphrased = False,
    taxonomy: Taxonomy = None,
) -> None:
    """Write task-suite examples as chat JSONL (a ready SFT data file)."""
    from databazaar.lm.chat import write_chat_jsonl

    examples = _examples(tasks, n, split, seed, paraphrased, taxonomy)
    write_chat_jsonl([e.messages() for e in examples], out)
    typer.echo(f"wrote {len(examples)} conversations to {out}")


@lm_app.command("eval")
def eval_cmd(
    model_dir: ModelDir,
    tasks: TaskList = None,
    n: PerFamily = 100,
    split: Annotated[str, typer.Option("--split", help="test (held out) or train")] = "test",
    seed: Annotated[int, typer.Option("--seed", help="random state of the draw")] = 1,
    paraphrased: Paraphrased = False,
    taxonomy: Taxonomy = None,
    threads: Threads = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the scores as JSON")] = False,
    quiet: Quiet = False,
) -> None:
    """Score a chat model on task-suite prompts: exact match, refusal and answer rates."""
    from databazaar.core.progress import progress_bar
    from databazaar.lm.evaluate import evaluate_tasks
    from databazaar.lm.model import load_model

    examples = _examples(tasks, n, split, seed, paraphrased, taxonomy)
    model, tok = load_model(model_dir)
    with progress_bar("evaluating", len(examples), quiet=quiet) as advance:
        scores = evaluate_tasks(model, tok, examples, progress=advance, num_threads=threads)
    if as_json:
        typer.echo(json.dumps({k: v for k, v in scores.items() if k != "samples"}, indent=1))
    else:
        _print_scores(scores)


zoo_app = typer.Typer(help="Tiny base model and assistant trained from scratch (cached).")
lm_app.add_typer(zoo_app, name="zoo")


@zoo_app.callback()
def _zoo() -> None:
    """Tiny base model and assistant trained from scratch (cached)."""


@zoo_app.command("build")
def zoo_build_cmd(
    out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--out", help="cache root (default: DATA_HOME/zoo)"),
    ] = None,
    small: Annotated[bool, typer.Option("--small", help="the reduced test recipe")] = False,
    force: Annotated[bool, typer.Option("--force", help="rebuild even if cached")] = False,
    taxonomy: Taxonomy = None,
    threads: Threads = None,
    quiet: Quiet = False,
) -> None:
    """Train (or reuse) the zoo; print its folders and held-out scores."""
    from dataclasses import replace

    from databazaar.core.progress import progress_bar
    from databazaar.lm.zoo import ZooConfig, build_zoo

    config = ZooConfig.small() if small else ZooConfig()
    config = replace(config, num_threads=threads)
    with progress_bar("building zoo", config.total_steps or None, quiet=quiet) as advance:
        zoo = build_zoo(config, out=out, taxonomy=taxonomy, force=force, progress=advance)
    typer.echo(f"base:      {zoo.base_dir}")
    typer.echo(f"assistant: {zoo.assistant_dir}")
    typer.echo(f"built in {zoo.meta['build_seconds']:.0f}s (hash {zoo.meta['hash']})")
    _print_scores(zoo.scores)
