"""Cross-check our PRR and UE methods against LM-Polygraph 0.7.0 on the same inputs.

:func:`polygraph_case` turns :class:`~databazaar.uncertainty.estimators.UEOutputs` (and
PRR cases) into the statistics LM-Polygraph's estimators read: greedy token
log-likelihoods, per-step log-probability vectors (the reported alternatives, ``-inf``
elsewhere), sample texts, sample log-likelihoods and tokens, the relation's entail /
contradict matrices and classes, and the ensemble's ``log_probas``. :func:`run_peer` runs
``_lmpolygraph_peer.py`` with an interpreter that has LM-Polygraph (ours when it is
installed here, else a separate venv) and :func:`compare` reports the largest absolute
difference per method and for PRR.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from databazaar.core.errors import InvalidInput
from databazaar.uncertainty.estimators import UEOutputs, estimate_all
from databazaar.uncertainty.similarity import get_relation

PEER_SCRIPT = Path(__file__).with_name("_lmpolygraph_peer.py")
METHODS = (
    "MSP",
    "Perplexity",
    "MeanTokenEntropy",
    "MonteCarloSequenceEntropy",
    "MonteCarloNormalizedSequenceEntropy",
    "SemanticEntropy",
    "LexicalSimilarity",
    "EigValLaplacian",
    "Eccentricity",
    "NumSemSets",
    "EnsembleTU",
    "EnsembleRMI",
    "EnsembleRMIabs",
)
#: checked when the outputs carry the statistics (P(True); embeddings and training ones)
INTERNAL_METHODS = ("PTrue", "Mahalanobis", "RDE")


def polygraph_python() -> str | None:
    """An interpreter with LM-Polygraph: ``DATABAZAAR_LMPOLYGRAPH_PYTHON``, else this one
    if it imports ``lm_polygraph``, else ``benchmarks/peers/.venv-lmpolygraph`` if present."""
    named = os.environ.get("DATABAZAAR_LMPOLYGRAPH_PYTHON")
    if named:
        return named
    import importlib.util

    if importlib.util.find_spec("lm_polygraph") is not None:
        return sys.executable
    repo = Path(__file__).resolve().parents[3]
    venv = repo / "benchmarks" / "peers" / ".venv-lmpolygraph" / "bin" / "python"
    return str(venv) if venv.exists() else None


def polygraph_case(
    outputs: Sequence[UEOutputs],
    prr_cases: Sequence[tuple[Sequence[float], Sequence[float]]] = (),
    *,
    relation: str = "rougeL",
    train_outputs: Sequence[UEOutputs] | None = None,
) -> dict[str, Any]:
    """The shared case as JSON-ready statistics (every output needs the same number of
    samples, top-logprobs and ensemble scores). Embeddings are rounded to float32 on both
    sides, as LM-Polygraph's calculators hand them over."""
    n_samples = {len(o.samples) for o in outputs}
    if len(n_samples) != 1:
        raise InvalidInput("every output needs the same number of samples for the cross-check")
    mats = get_relation(relation).matrices([[s.text for s in o.samples] for o in outputs])
    vocab: dict[str, int] = {}

    def keys(step: Sequence[tuple[str, float]]) -> list[str]:
        """Token keys of one step, made unique (two ids may decode to the same text)."""
        seen: dict[str, int] = {}
        out = []
        for t, _ in step:
            seen[t] = seen.get(t, 0) + 1
            out.append(f"{t}\x00{seen[t]}")
        return out

    for o in outputs:
        for step in o.output.top_logprobs or []:
            for k in keys(step):
                vocab.setdefault(k, len(vocab))
    log_probs = []
    for o in outputs:
        seq = []
        for step in o.output.top_logprobs or []:
            vec: list[float | None] = [None] * len(vocab)
            for k, (_, v) in zip(keys(step), step, strict=True):
                vec[vocab[k]] = float(v)
            seq.append(vec)
        log_probs.append(seq)
    return {
        "prr_cases": [
            {"ue": list(map(float, u)), "metric": list(map(float, m))} for u, m in prr_cases
        ],
        "greedy_log_likelihoods": [list(o.output.token_logprobs or []) for o in outputs],
        "greedy_log_probs": log_probs,
        "sample_texts": [[s.text for s in o.samples] for o in outputs],
        "sample_log_probs": [[float(np.sum(s.token_logprobs)) for s in o.samples] for o in outputs],
        "sample_tokens": [[list(s.tokens) for s in o.samples] for o in outputs],
        "entail": [m[0].tolist() for m in mats],
        "contra": [m[1].tolist() for m in mats],
        "is_entail": [m[2].tolist() for m in mats],
        "ensemble_log_probas": [o.member_logprobs for o in outputs],
        "p_true": (
            [o.ptrue_logprob for o in outputs]
            if all(o.ptrue_logprob is not None for o in outputs)
            else None
        ),
        "embeddings": _f32([o.embedding for o in outputs]),
        "train_embeddings": _f32([o.embedding for o in train_outputs or []]),
    }


def _f32(rows: list[Any]) -> list[list[float]] | None:
    if not rows or any(r is None for r in rows):
        return None
    return np.asarray(rows, dtype=np.float32).astype(float).tolist()


def run_peer(case: dict[str, Any], python: str, *, timeout: float = 300) -> dict[str, Any]:
    """Run the LM-Polygraph side on ``case`` with ``python``; its JSON result."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "case.json", Path(tmp) / "result.json"
        src.write_text(json.dumps(case))
        proc = subprocess.run(
            [python, str(PEER_SCRIPT), str(src), str(dst)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        )
        if proc.returncode != 0:
            raise RuntimeError(f"LM-Polygraph peer failed:\n{proc.stderr[-3000:]}")
        return json.loads(dst.read_text())


def compare(
    outputs: Sequence[UEOutputs],
    prr_cases: Sequence[tuple[Sequence[float], Sequence[float]]],
    python: str,
    *,
    relation: str = "rougeL",
    methods: Sequence[str] = METHODS,
    train_outputs: Sequence[UEOutputs] | None = None,
) -> dict[str, Any]:
    """Ours vs LM-Polygraph: max |difference| per method (and relative, for the density
    methods, whose peer computes in float32), for PRR, and both sides' values. Methods the
    peer could not compute from the case are listed under ``not_checked``."""
    from databazaar.uncertainty.benchmark import prr

    case = polygraph_case(outputs, prr_cases, relation=relation, train_outputs=train_outputs)
    case["methods"] = list(methods)
    peer = run_peer(case, python)
    if case["embeddings"] is not None:  # both sides see the same float32 embeddings
        outputs = [
            replace(o, embedding=e) for o, e in zip(outputs, case["embeddings"], strict=True)
        ]
        train_outputs = [
            replace(o, embedding=e)
            for o, e in zip(train_outputs or [], case["train_embeddings"] or [], strict=True)
        ]
    checked = [m for m in methods if m in peer["estimators"]]
    ours = estimate_all(outputs, checked, relation=relation, train_outputs=train_outputs)
    diffs = {m: float(np.max(np.abs(np.asarray(peer["estimators"][m]) - ours[m]))) for m in checked}
    rel = {
        m: float(
            np.max(
                np.abs(np.asarray(peer["estimators"][m]) - ours[m])
                / np.maximum(np.abs(ours[m]), 1e-12)
            )
        )
        for m in checked
    }
    our_prr = [prr(u, q) for u, q in prr_cases]
    prr_diff = (
        float(np.max(np.abs(np.array(our_prr) - np.array(peer["prr"])))) if prr_cases else 0.0
    )
    return {
        "method_max_abs_diff": diffs,
        "method_max_rel_diff": rel,
        "not_checked": [m for m in methods if m not in checked],
        "prr_max_abs_diff": prr_diff,
        "prr_ours": our_prr,
        "prr_lm_polygraph": peer["prr"],
        "lm_polygraph_version": peer.get("version", ""),
    }
