"""Dev: lookup binding through the zoo's base stage (recall drills, then the bridge).

Builds the zoo's tokenizer and a fresh model as ``build_zoo`` does, trains the recall
drills and then the bridge (drills mixed with the lookup family's training chats), and
every ``--every`` steps prints one JSON line: first-token accuracy on 200 held-out lookup
prompts (dev seed 99) and on 200 held-out drills. Dev seeds only; results are summarised
in ``results/lm_lookup_probe.md`` (session 9). Example::

    python benchmarks/lm_bridge_curve.py --name c1 --drill-steps 1500 --bridge-steps 3000
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from databazaar.lm.model import build_model
from databazaar.lm.tasks import generate_tasks, recall_drills
from databazaar.lm.train import EvalRecord, TrainConfig, train_lm
from databazaar.lm.zoo import (
    ZooConfig,
    chat_rows,
    drill_rows,
    stack_rows,
    training_conversations,
    zoo_tokenizer,
)

DEV_SEED = 99


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--name", required=True)
    ap.add_argument("--arch", default="llama")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--drill-steps", type=int, default=1500)
    ap.add_argument("--drill-lr", type=float, default=3e-4)
    ap.add_argument("--drill-min-ratio", type=float, default=0.1)
    ap.add_argument("--bridge-steps", type=int, default=3000)
    ap.add_argument("--bridge-lr", type=float, default=3e-4)
    ap.add_argument("--drill-share", type=float, default=0.5, help="of the bridge rows")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--every", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if not 0 <= a.drill_share < 1:
        raise SystemExit("--drill-share must be in [0, 1)")
    torch.set_num_threads(1)
    cfg = replace(
        ZooConfig(), vocab_size=1024, answer_lead=" ", recall_drills=60000, random_state=a.seed
    )
    train = generate_tasks(n_per_family=cfg.n_train_per_family, split="train", random_state=a.seed)
    convs = training_conversations(train, " ")
    tok = zoo_tokenizer(convs, cfg.vocab_size)
    shape = replace(
        cfg.model, architecture=a.arch, n_embd=a.width, n_layer=a.layers, n_head=a.heads
    )
    model = build_model(shape, vocab_size=len(tok), seed=a.seed, eos_token_id=tok.eos_token_id)

    test = generate_tasks(["lookup"], n_per_family=200, split="test", random_state=DEV_SEED)
    prompts = [
        tok.apply_chat_template(
            [{"role": "user", "content": e.prompt}], add_generation_prompt=True, tokenize=False
        )
        for e in test
    ]
    first = [tok(" " + e.answer, add_special_tokens=False)["input_ids"][0] for e in test]
    held_drills = recall_drills(200, random_state=777)

    def next_token(text: str) -> int:
        ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        return int(model(ids).logits[0, -1].argmax())

    def accuracy() -> tuple[float, float]:
        model.eval()
        with torch.no_grad():
            look = np.mean([next_token(p) == f for p, f in zip(prompts, first, strict=True)])
            drills = np.mean(
                [
                    tok.decode([next_token(t[: t.rindex(" ", 0, len(t) - 1)])]).strip()
                    == t.rstrip(".").rsplit(" ", 1)[1]
                    for t in held_drills
                ]
            )
        model.train()
        return float(look), float(drills)

    t0 = time.perf_counter()
    dummy = {"x": np.full((2, 8), tok.eos_token_id)}  # train_lm calls on_eval with eval sets

    def log(phase: str) -> Callable[[EvalRecord], None]:
        def report(rec: EvalRecord) -> None:
            look, drills = accuracy()
            row: dict[str, Any] = {"name": a.name, "phase": phase, "step": rec.step}
            row |= {"lookup": look, "drills": drills, "s": round(time.perf_counter() - t0)}
            print(json.dumps(row), flush=True)

        return report

    def run(blocks: Any, mask: Any, steps: int, lr: float, ratio: float, phase: str) -> None:
        train_lm(
            model,
            blocks,
            config=TrainConfig(
                batch_size=a.batch,
                lr=lr,
                max_steps=steps,
                seed=a.seed + (phase == "bridge"),
                weight_decay=0.0,
                min_lr_ratio=ratio,
                eval_every=a.every,
                num_threads=1,
            ),
            eval_sets=dummy,
            on_eval=log(phase),
            loss_mask=mask,
        )

    db, dm = drill_rows(cfg, tok)
    if a.drill_steps:
        run(db, dm, a.drill_steps, a.drill_lr, a.drill_min_ratio, "drills")
    lookup = [c for c, e in zip(convs, train, strict=True) if e.family == "lookup"]
    chats = chat_rows(tok, lookup)
    n_drills = round(len(lookup) * a.drill_share / (1 - a.drill_share))
    parts = [(db[:n_drills], dm[:n_drills]), chats] if n_drills else [chats]
    run(*stack_rows(tok.eos_token_id, *parts), a.bridge_steps, a.bridge_lr, 1.0, "bridge")


if __name__ == "__main__":
    main()
