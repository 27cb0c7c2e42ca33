"""Why does the tiny assistant fail lookup? A lookup-only probe on DEV seeds.

Fine-tunes a fresh tiny model (no base phase) on the ``lookup`` family alone with
:func:`databazaar.lm.sft.sft` and scores held-out lookup prompts drawn with a dev seed
(99 or >= 100, never a report seed). It compares the position scheme of the
architecture (GPT-2's learned absolute positions vs Llama's rotary ones) and whether
the answer carries the lead space that makes it the same token as in the facts. Each
run appends one line to ``benchmarks/results/lm_lookup_probe.jsonl``: the lookup exact
match, the share of answers that are *some* value from the prompt's facts (a model that
copies a value but cannot bind it to the asked name scores about 1/3 exact match with
nearly all answers in the facts), the training-loss curve and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

from databazaar.lm.chat import set_chat_template
from databazaar.lm.evaluate import evaluate_tasks
from databazaar.lm.model import ModelConfig, build_model
from databazaar.lm.sft import SFTConfig, sft
from databazaar.lm.tasks import RELATIONS, TaskExample, generate_tasks
from databazaar.lm.tokenizer import train_bpe_tokenizer
from databazaar.lm.zoo import training_conversations

OUT = Path(__file__).resolve().parent / "results" / "lm_lookup_probe.jsonl"


def _more_questions(
    conv: list[dict[str, str]], k: int, lead: str, replace: bool = False
) -> list[dict[str, str]]:
    """The chat with up to ``k - 1`` more user turns asking about names of its facts.

    By default each further turn asks about another name (shuffled), so the last answer
    can be had by elimination; with ``replace`` the names are drawn with replacement
    (the asked one included), so every answer needs the name bound to its value.
    """
    prompt = conv[0]["content"]
    facts = prompt.split("Facts: ")[1].split(" Question:")[0]
    asked = prompt.rsplit(" Question: ", 1)[1]
    out = list(conv)
    sentences = facts.rstrip(".").split(". ")
    rnd = random.Random(prompt)
    if replace:
        sentences = [rnd.choice(sentences) for _ in range(k - 1)]
    else:
        rnd.shuffle(sentences)  # no shortcut by the order of the facts
    for sentence in sentences:
        name, rest = sentence.split(" ", 1)
        for rel, question, _ in RELATIONS:
            if rest.startswith(rel + " "):
                q = question.format(n=name)
                if (replace or q != asked) and len(out) < 2 * k:
                    value = rest[len(rel) + 1 :]
                    out += [{"role": "user", "content": f"Question: {q}"},
                            {"role": "assistant", "content": lead + value}]  # fmt: skip
    return out


#: question wordings that end with the asked name (a fixed offset from the answer)
END_QUESTIONS = {
    "lives in": "Which city is the home of {n}?",
    "likes": "Which food is liked by {n}?",
    "owns a": "Which animal is owned by {n}?",
    "works as a": "What is the job of {n}?",
}


#: facts with the value a fixed three tokens after the name, for the ``fixed`` format
FIXED_FACTS = {
    "lives in": "lives in",
    "likes": "likes eating",
    "owns a": "owns a",
    "works as a": "became a",
}


#: table headers of the ``table`` format (facts as "name: value" pairs)
TABLE_HEADS = {"lives in": "home city", "likes": "favourite food", "owns a": "pet",
               "works as a": "job"}  # fmt: skip


def _reword(examples: list[TaskExample], fmt: str) -> list[TaskExample]:
    """The lookup examples in prompt format ``fmt`` (``orig``: unchanged)."""
    if fmt == "orig":
        return examples
    out = []
    for e in examples:
        facts, asked = e.prompt.split(" Question: ")
        first = facts.split("Facts: ")[1].split(". ")[0]
        name = next(n for n in first.split(" ")[:1])
        rel = next(r for r, _, _ in RELATIONS if first[len(name) + 1 :].startswith(r + " "))
        who = next(w for w in asked.replace("?", " ").split(" ") if w and w[0].isupper()
                   and w not in ("Where", "What"))  # fmt: skip
        if fmt == "end":
            prompt = f"{facts} Question: {END_QUESTIONS[rel].format(n=who)}"
        elif fmt == "table":
            pairs = [f.split(f" {rel} ") for f in facts.split("Facts: ")[1].rstrip(".").split(". ")]
            table = ", ".join(f"{n}: {v}" for n, v in pairs)
            prompt = (f"Facts ({TABLE_HEADS[rel]}): {table}. "
                      f"Question: {END_QUESTIONS[rel].format(n=who)}")  # fmt: skip
        elif fmt == "qfirst":  # the question before the facts: a fact's name can match it
            prompt = f"Question: {END_QUESTIONS[rel].format(n=who)} {facts}"
        elif fmt == "fixed":
            facts = facts.replace(f" {rel} ", f" {FIXED_FACTS[rel]} ")
            prompt = f"{facts} Question: {END_QUESTIONS[rel].format(n=who)}"
        else:
            raise SystemExit(f"unknown format {fmt}")
        out.append(TaskExample("lookup", prompt, e.answer, "exact", e.key))
    return out


def _recall_chats(n: int, lead: str) -> list[list[dict[str, str]]]:
    """``n`` chats asking to list the table facts again in a new order (dense binding)."""
    rng = random.Random(7)
    out = []
    for e in _reword(generate_tasks(["lookup"], n_per_family=n, random_state=5), "table"):
        table = e.prompt.split("): ")[1].split(". Question:")[0]
        pairs = table.split(", ")
        rng.shuffle(pairs)
        names = [p.split(":")[0] for p in pairs]
        head = e.prompt.split("(")[1].split(")")[0]
        ask = f"{e.prompt.split(' Question:')[0]} Question: list the {head} of " + (
            f"{names[0]}, {names[1]} and {names[2]}."
        )
        out.append([{"role": "user", "content": ask},
                    {"role": "assistant", "content": lead + ", ".join(pairs)}])  # fmt: skip
    return out


def _loss_printer(every: int = 100) -> None:
    """Make the SFT trainer print the mean training loss every ``every`` steps (stdout)."""
    import sys

    sft_mod = sys.modules["databazaar.lm.sft"]  # the package re-exports the function sft

    make = sft_mod.progress_callback

    def patched(progress):  # type: ignore[no-untyped-def]
        base = make(progress)
        seen: list[float] = []

        class _Log(type(base)):  # type: ignore[misc]
            def on_log(self, args, state, control, logs=None, **kw):  # type: ignore[no-untyped-def]
                if logs and "loss" in logs:
                    seen.append(float(logs["loss"]))
                    if state.global_step % every == 0:
                        print(f"step {state.global_step} loss {sum(seen[-every:]) / every:.3f}",
                              flush=True)  # fmt: skip

        return _Log()

    sft_mod.progress_callback = patched


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--arch", default="gpt2")
    ap.add_argument("--lead", default=" ")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--eval-seed", type=int, default=99)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--format", default="orig", help="orig | end (question ends with the name)")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument(
        "--with-replacement",
        action="store_true",
        help="follow-up questions drawn with replacement (no answer by elimination)",
    )
    ap.add_argument("--recall", type=int, default=0, help="extra chats listing the facts again")
    ap.add_argument("--init-std", type=float, default=None, help="weight init (None: 0.02)")
    ap.add_argument("--sched", default="cosine")
    ap.add_argument("--warmup", type=float, default=0.05)
    ap.add_argument(
        "--questions", type=int, default=1,
        help="questions per training chat: the first turn is the lookup prompt, each further "
        "user turn asks about another name of the same facts (denser binding supervision)",
    )  # fmt: skip
    args = ap.parse_args()
    if args.eval_seed < 99:
        raise SystemExit("dev runs use seed 99 or >= 100")
    _loss_printer()
    t0 = time.perf_counter()
    load = os.getloadavg()
    train = _reword(generate_tasks(["lookup"], n_per_family=args.n_train, random_state=0),
                    args.format)  # fmt: skip
    convs = training_conversations(train, args.lead)
    texts = [f"<|user|>\n{u['content']}\n<|assistant|>\n{a['content']}" for u, a in convs]
    if args.questions > 1:
        convs = [
            _more_questions(c, args.questions, args.lead, args.with_replacement) for c in convs
        ]
    if args.recall:
        convs = convs + _recall_chats(args.recall, args.lead)
        random.Random(3).shuffle(convs)
    tok = set_chat_template(train_bpe_tokenizer(texts, vocab_size=args.vocab, split_digits=True))
    model = build_model(
        ModelConfig(
            n_layer=args.layers, n_embd=args.width, n_head=args.heads, n_positions=160,
            architecture=args.arch, init_std=args.init_std,
        ),
        vocab_size=len(tok),
        eos_token_id=tok.eos_token_id,
    )  # fmt: skip
    cfg = SFTConfig(
        max_steps=args.steps, lr=args.lr, batch_size=32, num_threads=args.threads,
        lr_scheduler=args.sched, warmup_ratio=args.warmup,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        model, res = sft(model, tok, convs, tmp, config=cfg)
    test = _reword(
        generate_tasks(["lookup"], n_per_family=60, split="test", random_state=args.eval_seed),
        args.format,
    )
    scores = evaluate_tasks(model, tok, test, num_threads=args.threads)
    values = {v for _, _, pool in RELATIONS for v in pool}
    in_facts = sum(  # any format: the answer is a value word that the prompt names
        s["output"].strip() in values
        and s["output"].strip() in s["prompt"].split("?")[-1] + s["prompt"].split("Question:")[0]
        for s in scores["samples"]
    ) / len(test)
    loss = res.train_loss
    row = {
        **vars(args),
        "lookup_exact_match": scores["exact_match"]["lookup"],
        "answer_is_a_fact_value": in_facts,
        "loss_every_50": [
            round(sum(loss[i : i + 50]) / len(loss[i : i + 50]), 3) for i in range(0, len(loss), 50)
        ],
        "seconds": time.perf_counter() - t0,
        "load_average": [list(load), list(os.getloadavg())],
        "samples": scores["samples"][:4],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(json.dumps({k: row[k] for k in ("arch", "lead", "format", "vocab", "lookup_exact_match",
                                          "answer_is_a_fact_value", "seconds")}))  # fmt: skip


if __name__ == "__main__":
    main()
