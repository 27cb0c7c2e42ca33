"""Minimal in-context associative recall: which tiny models learn to bind, and how fast? (DEV)

A synthetic token task with the structure of the ``lookup`` family and nothing else:
three (name, value) pairs drawn from 20 names and 12 values, then a query name; the
target is the value paired with it (chance among the three values: 1/3). ``--layout``:

* ``adjacent``: ``n1 v1 n2 v2 n3 v3 SEP nq`` -> ``vq`` (8 tokens);
* ``lookup``: the lookup prompt's shape with fixed filler tokens standing for the words:
  ``F n1 R R v1 P n2 R R v2 P n3 R R v3 P Q Q Q Q nq Q A A A A`` -> ``vq`` (26 tokens: the name,
  two relation tokens, the value, a full stop; a question around the name and an
  assistant header before the answer).

``--gap`` and ``--tail`` set the filler between each name and its value and after the
asked name separately (defaults: 0/0 for ``adjacent``, 2/5 for ``lookup``), so each
obstacle can be tested alone. ``--switch S`` is a curriculum: ``adjacent`` for the first
S steps, then every other batch of the chosen layout.

Two models, trained from scratch with AdamW (betas 0.9/0.95, clip 1.0, constant rate)
on freshly drawn batches, loss on the answer only: ``own``, a plain pre-norm GPT block
written here (learned positions, LayerNorm, GELU MLP, PyTorch's default init: unit-normal
embeddings), and ``llama`` / ``gpt2``, the ``transformers`` classes as the zoo builds
them (``initializer_range`` 0.02 unless ``--init-std``). Accuracy is measured on 1,000
fresh sequences every 250 steps; one line per run is appended to
``results/lm_recall_minimal.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results" / "lm_recall_minimal.jsonl"
N_NAMES, N_VALUES, N_FILL = 20, 12, 6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="llama", choices=("own", "llama", "gpt2"))
    ap.add_argument("--layout", default="adjacent", choices=("adjacent", "lookup"))
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--init-std", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gap", type=int, default=None, help="filler tokens between name and value")
    ap.add_argument("--tail", type=int, default=None, help="filler tokens after the asked name")
    ap.add_argument(
        "--switch",
        type=int,
        default=0,
        help="curriculum: train on `adjacent` for this many steps, then on --layout mixed "
        "half and half with `adjacent`",
    )
    args = ap.parse_args()
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    vocab = N_NAMES + N_VALUES + N_FILL
    fill = [N_NAMES + N_VALUES + i for i in range(N_FILL)]  # SEP/F, R, P, Q, A, spare

    def draw(b: int, layout: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        layout = layout or args.layout
        plain = layout == "adjacent"
        gap = 0 if plain and layout != args.layout else args.gap
        tail = 0 if plain and layout != args.layout else args.tail
        gap = (0 if plain else 2) if gap is None else gap
        tail = (0 if plain else 5) if tail is None else tail
        names = torch.stack([torch.randperm(N_NAMES)[:3] for _ in range(b)])
        values = torch.stack([torch.randperm(N_VALUES)[:3] for _ in range(b)]) + N_NAMES
        k = torch.randint(3, (b,))
        asked, target = names[torch.arange(b), k], values[torch.arange(b), k]
        cols: list[torch.Tensor] = []

        def const(i: int, n: int = 1) -> None:
            cols.extend([torch.full((b,), fill[i])] * n)

        if not plain:
            const(0)
        for j in range(3):
            cols.append(names[:, j])
            if gap:
                const(1, gap)
            cols.append(values[:, j])
            if not plain:
                const(2)
        const(3, 1 if plain else 4)
        cols.append(asked)
        if tail:
            const(3)
            if tail > 1:
                const(4, tail - 1)
        return torch.stack(cols, 1), target

    width = max(draw(1)[0].shape[1], draw(1, "adjacent")[0].shape[1])
    if args.model == "own":
        model = _own(vocab, args.width, width)
    else:
        from databazaar.lm.model import ModelConfig, build_model

        model = build_model(
            ModelConfig(n_layer=2, n_embd=args.width, n_head=4, n_positions=32,
                        architecture=args.model, init_std=args.init_std),
            vocab_size=vocab, seed=args.seed,
        )  # fmt: skip
        model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)

    def logits(x: torch.Tensor) -> torch.Tensor:
        out = model(x) if args.model == "own" else model(input_ids=x).logits
        return out[:, -1]

    t0, load, curve = time.perf_counter(), os.getloadavg(), []
    for step in range(1, args.steps + 1):
        warm = step <= args.switch or (args.switch and step % 2 == 0)
        x, y = draw(args.batch, "adjacent" if warm else None)
        loss = F.cross_entropy(logits(x), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 250 == 0:
            with torch.no_grad():
                x, y = draw(1000)
                acc = float((logits(x).argmax(-1) == y).float().mean())
            curve.append({"step": step, "accuracy": acc, "loss": round(float(loss.detach()), 3),
                          "seconds": round(time.perf_counter() - t0)})  # fmt: skip
            print(json.dumps(curve[-1]), flush=True)
    row = {**vars(args), "tokens": width, "curve": curve,
           "load_average": [list(load), list(os.getloadavg())]}  # fmt: skip
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("a") as fh:
        fh.write(json.dumps(row) + "\n")


def _own(vocab: int, d: int, context: int):  # type: ignore[no-untyped-def]
    """A 2-layer pre-norm GPT block stack in plain PyTorch (4 heads, default init)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, t, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, 4, d // 4).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.out(a.transpose(1, 2).reshape(b, t, d))
            return x + self.mlp(self.ln2(x))

    class Own(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(context, d)
            self.blocks = nn.ModuleList([Block(), Block()])
            self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, vocab)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.tok(x) + self.pos(torch.arange(x.shape[1]))
            for blk in self.blocks:
                h = blk(h)
            return self.head(self.ln(h))

    return Own()


if __name__ == "__main__":
    main()
