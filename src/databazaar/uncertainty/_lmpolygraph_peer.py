"""Compute PRR and UE methods with LM-Polygraph 0.7.0 on a shared case (peer side).

Run with an interpreter that has ``lm-polygraph==0.7.0`` (the project venv when it
installs there, else ``benchmarks/peers/.venv-lmpolygraph``):

    python src/databazaar/uncertainty/_lmpolygraph_peer.py case.json result.json

``case.json`` holds the statistics LM-Polygraph's estimators read (names as in its stat
calculators; ``null`` in ``greedy_log_probs`` stands for ``-inf``) and PRR cases
``{"ue": [...], "metric": [...]}``, and optionally ``p_true`` and decoder ``embeddings`` /
``train_embeddings`` (float32, as LM-Polygraph's calculators return them);
``result.json`` gets each estimator's values and each case's normalised PRR, computed
only by LM-Polygraph's own classes and functions.
"""

import json
import sys

import numpy as np


def main(src: str, dst: str) -> None:
    import lm_polygraph
    from lm_polygraph import estimators as est
    from lm_polygraph.estimators.ensemble_sequence_measures import get_seq_level_ue
    from lm_polygraph.stat_calculators.entropy import EntropyCalculator
    from lm_polygraph.stat_calculators.semantic_classes import SemanticClassesCalculator
    from lm_polygraph.ue_metrics.pred_rej_area import PredictionRejectionArea
    from lm_polygraph.ue_metrics.ue_metric import get_random_scores, normalize_metric

    case = json.load(open(src))
    out = {"version": lm_polygraph.__version__ if hasattr(lm_polygraph, "__version__") else ""}
    prr = PredictionRejectionArea()
    out["prr"] = []
    for c in case["prr_cases"]:
        ue, metric = np.array(c["ue"], dtype=float), np.array(c["metric"], dtype=float)
        value = prr(ue, metric)
        oracle = prr(-metric, metric)
        rand = get_random_scores(prr, metric)
        out["prr"].append(float(normalize_metric(value, oracle, rand)))

    stats = {
        "greedy_log_likelihoods": case["greedy_log_likelihoods"],
        "greedy_log_probs": [
            [np.array([-np.inf if v is None else v for v in step]) for step in seq]
            for seq in case["greedy_log_probs"]
        ],
        "sample_texts": case["sample_texts"],
        "sample_log_probs": case["sample_log_probs"],
        "sample_tokens": case["sample_tokens"],
        "semantic_matrix_entail": np.array(case["entail"]),
        "semantic_matrix_contra": np.array(case["contra"]),
        "semantic_matrix_classes": np.where(np.array(case["is_entail"]), 0, 1),
        "entailment_id": 0,
    }
    wanted = set(case.get("methods") or [])
    methods = {
        "MSP": est.MaximumSequenceProbability(),
        "Perplexity": est.Perplexity(),
        "MeanTokenEntropy": est.MeanTokenEntropy(),
        "MonteCarloSequenceEntropy": est.MonteCarloSequenceEntropy(),
        "MonteCarloNormalizedSequenceEntropy": est.MonteCarloNormalizedSequenceEntropy(),
        "SemanticEntropy": est.SemanticEntropy(),
        "LexicalSimilarity": est.LexicalSimilarity("rougeL"),
        "EigValLaplacian": est.EigValLaplacian(),
        "Eccentricity": est.Eccentricity(),
        "NumSemSets": est.NumSemSets(),
    }
    methods = {k: m for k, m in methods.items() if not wanted or k in wanted}
    if "MeanTokenEntropy" in methods:
        stats.update(EntropyCalculator()(stats, texts=None, model=None))
    if methods.keys() & {"SemanticEntropy"}:
        stats.update(SemanticClassesCalculator()(stats, texts=None, model=None))
    out["estimators"] = {k: np.asarray(m(stats), dtype=float).tolist() for k, m in methods.items()}
    if all(x is not None for x in case["ensemble_log_probas"]) and (
        not wanted or any(k.startswith("Ensemble") for k in wanted)
    ):
        ens = get_seq_level_ue({"log_probas": np.array(case["ensemble_log_probas"])})
        out["estimators"]["EnsembleTU"] = np.asarray(ens["tu"], dtype=float).tolist()
        out["estimators"]["EnsembleRMI"] = np.asarray(ens["rmi"], dtype=float).tolist()
        out["estimators"]["EnsembleRMIabs"] = np.asarray(ens["rmi-abs"], dtype=float).tolist()
    if case.get("p_true") is not None and (not wanted or "PTrue" in wanted):
        out["estimators"]["PTrue"] = np.asarray(
            est.PTrue()({"p_true": np.array(case["p_true"])}), dtype=float
        ).tolist()
    if (
        case.get("embeddings") is not None
        and case.get("train_embeddings") is not None
        and (not wanted or wanted & {"Mahalanobis", "RDE"})
    ):
        emb = {
            "embeddings_decoder": np.array(case["embeddings"], dtype=np.float32),
            "train_embeddings_decoder": np.array(case["train_embeddings"], dtype=np.float32),
        }
        md = est.MahalanobisDistanceSeq("decoder")(dict(emb))
        out["estimators"]["Mahalanobis"] = np.asarray(md, dtype=float).tolist()
        rde = est.RDESeq("decoder")({k: np.asarray(v, dtype=float) for k, v in emb.items()})
        out["estimators"]["RDE"] = np.asarray(rde, dtype=float).tolist()
    json.dump(out, open(dst, "w"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
