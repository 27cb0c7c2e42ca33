"""``databazaar lm``: use a causal LM saved in a local folder.

* ``generate MODEL_DIR PROMPT... [--max-tokens N] [--temperature T] [--seed S] [--json]``
  prints one completion per prompt (greedy by default; ``--json`` adds tokens and
  log-probabilities);
* ``serve MODEL_DIR [--host 127.0.0.1] [--port 8001] [--name NAME]`` serves it under the
  OpenAI API shapes (``/v1/completions``, ``/v1/chat/completions``, ``/v1/models``), so
  :class:`~databazaar.lm.generate.OpenAICompatibleBackend` and other OpenAI clients
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
    prompts: Annotated[list[str], typer.Argument(help="one or more prompts")],
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="new tokens per prompt")] = 32,
    temperature: Annotated[
        float, typer.Option("--temperature", help="0 is greedy; > 0 samples")
    ] = 0.0,
    seed: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--seed", help="seed for sampling"),
    ] = None,
    threads: Threads = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON object per prompt with tokens/log-probs")
    ] = False,
) -> None:
    """Complete each prompt with the model and print the continuations."""
    backend = _backend(model_dir, threads)
    out = backend.generate(
        prompts, max_new_tokens=max_tokens, temperature=temperature, seed=seed, logprobs=as_json
    )
    for prompt, g in zip(prompts, out, strict=True):
        if as_json:
            record = {
                "prompt": prompt,
                "text": g.text,
                "tokens": g.tokens,
                "token_logprobs": g.token_logprobs,
                "finish_reason": g.finish_reason,
            }
            typer.echo(json.dumps(record, ensure_ascii=False))
        else:
            typer.echo(g.text)


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
