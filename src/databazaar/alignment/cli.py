"""``databazaar align dpo|orpo|rdpo|rorpo MODEL_DIR PAIRS.jsonl -o OUT``: preference training;
``databazaar align multimodal*``: language-only instruction tuning of a vision-language
model (see :mod:`databazaar.alignment.multimodal.cli`).

Trains the model in ``MODEL_DIR`` on the pairs with TRL (see
:mod:`databazaar.alignment.preference`) and saves it to ``OUT``; RDPO and RORPO need a
``rationale`` on every pair (``databazaar enrich rationales`` adds them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

align_app = typer.Typer(
    help="Preference learning (DPO, ORPO, RDPO, RORPO) and multimodal instruction tuning (MLAN)."
)


def _run(method: str, model_dir: Path, pairs: Path, output: Path, **opts) -> None:  # type: ignore[no-untyped-def]
    from databazaar.alignment.preference import PreferenceConfig, train_preference
    from databazaar.core.progress import progress_bar
    from databazaar.lm.model import load_model
    from databazaar.lm.pairs import read_pairs

    quiet = opts.pop("quiet")
    config = PreferenceConfig(method=method, **opts)
    config.validate()
    data = read_pairs(pairs, rationale=method in ("rdpo", "rorpo"))
    model, tok = load_model(model_dir)
    with progress_bar(method, config.steps, quiet=quiet) as advance:
        _, res = train_preference(model, tok, data, output, config, progress=advance)
    last = f", last loss {res.train_loss[-1]:.4f}" if res.train_loss else ""
    typer.echo(f"{method}: {res.steps} steps on {res.n_pairs} pairs{last}; saved to {output}")


def _command(method: str, doc: str) -> None:
    def cmd(
        model_dir: Annotated[Path, typer.Argument(help="model folder (weights, tokenizer)")],
        pairs: Annotated[Path, typer.Argument(help="preference pairs (JSON lines)")],
        output: Annotated[Path, typer.Option("--output", "-o", help="folder for the model")],
        beta: Annotated[float, typer.Option("--beta", help="DPO beta / ORPO lambda")] = 0.1,
        gamma: Annotated[float, typer.Option("--gamma", help="rationale weight")] = 0.1,
        lr: Annotated[float, typer.Option("--lr")] = 5e-4,
        batch_size: Annotated[int, typer.Option("--batch-size")] = 16,
        epochs: Annotated[float, typer.Option("--epochs")] = 1.0,
        steps: Annotated[
            Optional[int],  # noqa: UP045
            typer.Option("--steps", help="optimizer steps (overrides --epochs)"),
        ] = None,
        seed: Annotated[int, typer.Option("--seed")] = 0,
        threads: Annotated[Optional[int], typer.Option("--threads")] = None,  # noqa: UP045
        quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    ) -> None:
        _run(
            method,
            model_dir,
            pairs,
            output,
            beta=beta,
            gamma=gamma,
            lr=lr,
            batch_size=batch_size,
            epochs=epochs,
            steps=steps,
            random_state=seed,
            num_threads=threads,
            quiet=quiet,
        )

    cmd.__doc__ = doc
    align_app.command(method)(cmd)


_command("dpo", "Direct preference optimisation (Rafailov et al., 2023).")
_command("orpo", "Odds-ratio preference optimisation (Hong et al., 2024).")
_command("rdpo", "DPO with the rationale term (Just et al., 2024).")
_command("rorpo", "ORPO with the rationale term (Just et al., 2024).")


def _register_multimodal() -> None:
    from databazaar.alignment.multimodal.cli import register

    register(align_app)


_register_multimodal()
