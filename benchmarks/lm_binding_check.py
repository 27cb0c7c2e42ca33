"""Does a tiny transformer learn to bind a name to its value? A fast DEV check (no TRL).

A plain PyTorch loop (AdamW, assistant-only loss through the chat template's masks,
right padding) trains a fresh ``transformers`` model on the ``lookup`` family and
evaluates held-out lookup prompts of a dev seed (99 or >= 100, never a report seed)
every ``--eval-every`` steps, so the step at which binding starts is seen directly.
Answer formats (``--answer``):

* ``value``: the family's answer as it was before (``Rome``);
* ``sentence``: the answer repeats the asked fact (``Ben lives in Rome.``): its last
  tokens ``Ben lives in`` occur in the facts followed by the value, the plain
  induction pattern.

Scores: ``value_correct`` (the asked value is the answer's last word), ``exact`` (the
whole answer is the reference) and ``in_facts`` (the last word is one of the prompt's
three values: copying without binding gives ``value_correct`` about ``in_facts`` / 3).
One line per run is appended to ``results/lm_binding_check.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from databazaar.lm.chat import encode_chat, set_chat_template
from databazaar.lm.evaluate import answer_prompts
from databazaar.lm.model import ModelConfig, build_model
from databazaar.lm.tasks import NAMES, RELATIONS, TaskExample, generate_tasks, normalize
from databazaar.lm.tokenizer import train_bpe_tokenizer

OUT = Path(__file__).resolve().parent / "results" / "lm_binding_check.jsonl"


def _sentence(prompt: str, value: str) -> str:
    """The fact of ``prompt`` whose value is ``value`` (``Ben lives in Rome.``)."""
    facts = prompt.split("Facts: ")[1].split(" Question:")[0]
    return next(f + "." for f in facts.rstrip(".").split(". ") if f.endswith(" " + value))


def _adjacent(e: TaskExample) -> TaskExample:
    """``e`` with facts written ``Ben Rome.``: the value right after its name."""
    facts, question = e.prompt.split(" Question: ")
    for rel, _, _ in RELATIONS:
        facts = facts.replace(f" {rel} ", " ")
    return replace(e, prompt=f"{facts} Question: {question}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--answer", default="sentence", choices=("value", "sentence"))
    ap.add_argument("--facts", default="sentence", choices=("sentence", "adjacent"))
    ap.add_argument("--arch", default="llama")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--n-train", type=int, default=8000)
    ap.add_argument("--lead", default=" ")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--eval-seed", type=int, default=99)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--restate",
        type=int,
        default=0,
        help="plain-text sequences: the facts, then this many of them restated",
    )
    ap.add_argument(
        "--induct",
        type=int,
        default=0,
        help="pre-phase text: up to this many random task words, then a prefix of them again",
    )
    ap.add_argument("--pre-steps", type=int, default=0, help="steps on restatement text first")
    ap.add_argument(
        "--mix",
        type=float,
        default=0.0,
        help="share of restatement sequences in each batch after the first phase",
    )
    args = ap.parse_args()
    if args.eval_seed < 99:
        raise SystemExit("dev runs use seed 99 or >= 100")
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    t0, load = time.perf_counter(), os.getloadavg()
    train = generate_tasks(["lookup"], n_per_family=args.n_train, random_state=args.seed)
    test = generate_tasks(["lookup"], n_per_family=60, split="test", random_state=args.eval_seed)
    if args.facts == "adjacent":
        train, test = [_adjacent(e) for e in train], [_adjacent(e) for e in test]

    def ref(e):  # type: ignore[no-untyped-def]
        return e.answer if args.answer == "value" else _sentence(e.prompt, e.answer)

    convs = [[{"role": "user", "content": e.prompt},
              {"role": "assistant", "content": args.lead + ref(e)}] for e in train]  # fmt: skip
    texts = [f"<|user|>\n{c[0]['content']}\n<|assistant|>\n{c[1]['content']}" for c in convs]
    tok = set_chat_template(train_bpe_tokenizer(texts, vocab_size=args.vocab, split_digits=True))
    enc = [encode_chat(tok, c) for c in convs]
    rnd = np.random.default_rng(args.seed + 1)
    plain = []  # (ids, mask) of restatement text, loss on every token
    words = sorted({w for _, _, pool in RELATIONS for w in pool} | set(NAMES))
    for _ in range(len(train) if args.induct else 0):  # repeated random words: induction
        n = int(rnd.integers(3, args.induct + 1))  # varied, so no fixed offset to copy from
        seq = " " + " ".join(words[i] for i in rnd.integers(len(words), size=n))
        again = seq.split(" ")[1 : 1 + int(rnd.integers(1, n + 1))]  # a prefix, repeated
        ids = tok(seq + " " + " ".join(again))["input_ids"] + [tok.eos_token_id]
        plain.append((ids, [1] * len(ids)))
    for e in train if args.restate else []:
        facts = e.prompt.split("Facts: ")[1].split(" Question:")[0].rstrip(".").split(". ")
        again = [facts[i] for i in rnd.integers(len(facts), size=args.restate)]
        ids = tok(". ".join(facts + again) + ".")["input_ids"] + [tok.eos_token_id]
        plain.append((ids, [1] * len(ids)))
    model = build_model(
        ModelConfig(n_layer=args.layers, n_embd=args.width, n_head=args.heads,
                    n_positions=160, architecture=args.arch),
        vocab_size=len(tok), seed=args.seed, eos_token_id=tok.eos_token_id,
    )  # fmt: skip
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    total = args.pre_steps + args.steps
    warm = max(1, total // 20)

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    gen = torch.Generator().manual_seed(args.seed)
    pad = tok.pad_token_id
    values = {v for _, _, pool in RELATIONS for v in pool}
    curve: list[dict] = []
    losses: list[float] = []

    def evaluate(step: int) -> dict:
        model.eval()
        outs = answer_prompts(model, tok, [e.prompt for e in test], batch_size=60)
        model.train()
        hits = 0
        with torch.no_grad():  # plain text: the facts, then one restated without its value
            for e in test:
                facts = e.prompt.split("Facts: ")[1].split(" Question:")[0]
                asked = _sentence(e.prompt, e.answer)[: -len(e.answer) - 2]
                x = torch.tensor([tok(f"{facts} {asked}")["input_ids"]])
                nxt = tok.decode([int(model(input_ids=x).logits[0, -1].argmax())])
                hits += nxt.strip() != "" and e.answer.startswith(nxt.strip())
        last = [o.strip().rstrip(".").split(" ")[-1] if o.strip() else "" for o in outs]
        row = {
            "step": step,
            "exact": sum(normalize(o) == normalize(ref(e)) for o, e in zip(outs, test, strict=True))
            / 60,
            "value_correct": sum(w == e.answer for w, e in zip(last, test, strict=True)) / 60,
            "plain_bind": hits / 60,
            "in_facts": sum(
                w in values and f" {w}." in e.prompt for w, e in zip(last, test, strict=True)
            )
            / 60,
            "loss": round(sum(losses[-100:]) / max(1, len(losses[-100:])), 3),
            "seconds": round(time.perf_counter() - t0),
            "sample": outs[0],
        }
        print(json.dumps(row), flush=True)
        return row

    model.train()
    for step in range(args.pre_steps + args.steps):
        share = 1.0 if step < args.pre_steps else args.mix
        n_plain = round(share * args.batch) if plain else 0
        rows = [plain[i] for i in torch.randint(max(1, len(plain)), (n_plain,), generator=gen)]
        rows += [
            (enc[i].input_ids, enc[i].assistant_mask)
            for i in torch.randint(len(enc), (args.batch - n_plain,), generator=gen).tolist()
        ]
        width = max(len(x) for x, _ in rows)
        ids = torch.full((args.batch, width), pad)
        labels = torch.full((args.batch, width), -100)
        mask = torch.zeros((args.batch, width), dtype=torch.long)
        for r, (x, m) in enumerate(rows):
            ids[r, : len(x)] = torch.tensor(x)
            mask[r, : len(x)] = 1
            labels[r, : len(x)] = torch.tensor(
                [t if k else -100 for t, k in zip(x, m, strict=True)]
            )
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if (step + 1) % args.eval_every == 0 or step + 1 == args.pre_steps + args.steps:
            curve.append(evaluate(step + 1))
    row = {**vars(args), "curve": curve, "load_average": [list(load), list(os.getloadavg())]}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("a") as fh:
        fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
