"""``databazaar lm``: use a causal LM saved in a local folder.

* ``generate MODEL_DIR PROMPT... [--chat | --messages FILE] [-n N] [--max-tokens N]
  [--temperature T] [--top-p P] [--seed S] [--stop STR] [--json] [--logprobs]`` prints
  one completion (or, with ``--chat``/``--messages``, one assistant answer) per sample,
  greedy by default; ``--json`` prints tokens and ids, ``--logprobs`` log-probabilities;
* ``serve MODEL_DIR [--host 127.0.0.1] [--port 8001] [--name NAME]`` serves it under the
  OpenAI API shapes (``/v1/completions``, ``/v1/chat/completions``, ``/v1/models``), so
  :class:`~databazaar.lm.openai_client.OpenAICompatibleBackend` and other OpenAI clients
  can use it.

``MODEL_DIR`` is a folder written by :func:`databazaar.lm.model.save_model` (for example
by ``databazaar mixture train``) or any local Hugging Face causal LM folder with its
tokenizer.  Only ``typer`` is imported at module level.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

lm_app = typer.Typer(help="Generate with, or serve, a causal LM from a local folder.")


@lm_app.callback()
def _lm() -> None:
    """Generate with, or serve, a causal LM from a local folder."""


ModelDir = Annotated[
    Path,
    typer.Argument(help="model folder (config, weights and tokenizer)"),
]
Threads = Annotated[Optional[int], typer.Option("--threads", help="torch CPU threads")]  # noqa: UP045


def _backend(model_dir: Path, threads: int | None):  # type: ignore[no-untyped-def]
    from databazaar.lm.generate import LocalModelBackend

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
) -> None:
    """Complete prompts, or answer conversations, and print the generations.

    Prints one line per sample (prompt-major: all samples of the first prompt first), or
    one JSON object per sample with ``--json``/``--logprobs``.
    """
    from databazaar.core.errors import InvalidInput
    from databazaar.lm.generate import SamplingParams, read_conversations

    params = SamplingParams(
        max_new_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        n=n,
        seed=seed,
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
    if convs is not None:
        out = backend.chat(convs, params)
    else:
        out = backend.generate(prompts or [], params)
    for g in out:
        if not (as_json or params.logprobs):
            typer.echo(g.text)
            continue
        record = {
            "prompt_index": g.prompt_index,
            "sample_index": g.sample_index,
            "text": g.text,
            "tokens": g.tokens,
            "token_ids": g.token_ids,
            "finish_reason": g.finish_reason,
        }
        if params.logprobs:
            record["token_logprobs"] = g.token_logprobs
            record["logprob"] = g.logprob
        if g.top_logprobs:
            record["top_logprobs"] = [[list(pair) for pair in step] for step in g.top_logprobs]
        typer.echo(json.dumps(record, ensure_ascii=False))


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
) -> None:
    """Serve the model with OpenAI-compatible completion and chat endpoints."""
    import uvicorn

    from databazaar.core.errors import InvalidInput
    from databazaar.lm.serve import create_openai_app

    if not (0 < port < 65536):
        raise InvalidInput(f"port must be in 1..65535, got {port}")
    backend = _backend(model_dir, threads)
    app = create_openai_app(backend, model_name=name or model_dir.name)
    typer.echo(f"serving {model_dir} as {name or model_dir.name!r} on http://{host}:{port}/v1")
    uvicorn.run(app, host=host, port=port, log_level=log_level)
