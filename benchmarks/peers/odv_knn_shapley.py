"""Time OpenDataVal 1.3's KNN-Shapley evaluator on one data set (run in the peer venv).

Usage (with the interpreter of the environment built by ``setup_opendataval.sh``)::

    benchmarks/peers/.venv-odv/bin/python benchmarks/peers/odv_knn_shapley.py \
        data.npz out.npz --k 5 [--batch-size 32] [--threads 1]
    benchmarks/peers/.venv-odv/bin/python benchmarks/peers/odv_knn_shapley.py --self-test

``data.npz`` holds ``x_train, y_train, x_test, y_test``.  ``out.npz`` receives
``values`` (float64, one per training point, in input order), ``seconds`` (wall time of
the valuation call only), ``prep_seconds`` (numpy -> torch and one-hot encoding, outside
the timed region) and metadata (``k``, ``batch_size``, ``threads``, versions).

What OpenDataVal computes (``opendataval/dataval/knnshap/knnshap.py``, class
``KNNShapley``, a ``ModelLessMixin`` evaluator):

* Euclidean distances ``torch.cdist`` between every training and validation point, in
  blocks of ``batch_size`` x ``batch_size`` (default 32), in float32: OpenDataVal's
  ``DataFetcher`` hands it float32 tensors and the evaluator fails on float64 ones, so
  this script casts features to float32 (values are then accumulated in float32 too).
* For each validation point j a stable ``argsort`` of the distances, then the recursion
  of Jia et al. (2019, Theorem 1) from the farthest point inwards::

      s[a_N] = 1[y_{a_N} = y_j] / N
      s[a_i] = s[a_{i+1}] + min(K, i) / (K * i) * (1[y_{a_i} = y_j] - 1[y_{a_{i+1}} = y_j])

  where ``1[.]`` compares whole label rows (``(y == y_valid).all(dim=1)``), so labels
  are given as one-hot rows, as OpenDataVal's fetcher produces them.
* The value of a training point is the **mean** over validation points.

``min(K, i) / (K i) = 1 / max(K, i)``, which is pyDVL 0.10's form of the same recursion,
and pyDVL also averages over test points, so both peers compute the same numbers; they
can differ only where distances tie (different tie-breaking), where float32 distance
round-off swaps two nearly equidistant neighbours, and by float32 accumulation error
(about 1e-7 relative) in OpenDataVal's running sum.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import types
from typing import Any

import numpy as np

# The evaluator wraps its O(N) recursion in a tqdm bar; keep stderr clean.
os.environ.setdefault("TQDM_DISABLE", "1")

_IMAGESETS = "opendataval.dataloader.datasets.imagesets"


def load_evaluator() -> type:
    """Import ``opendataval.dataval.knnshap.KNNShapley`` without torchvision.

    ``opendataval.dataval`` imports ``opendataval.dataloader``, whose ``datasets``
    package registers image data sets in ``imagesets.py`` and imports torchvision at
    module level.  No CPU torchvision wheel matching torch 2.13 is reachable here, so
    that one module is replaced by an empty module (its image data sets are never
    used by KNN-Shapley).  Everything else is OpenDataVal's own code.
    """
    try:
        import torchvision  # noqa: F401
    except Exception:  # missing, or a CUDA build that cannot load on CPU torch
        sys.modules.setdefault(_IMAGESETS, types.ModuleType(_IMAGESETS))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers 4.35 on torch 2.13
        from opendataval.dataval.knnshap import KNNShapley
    return KNNShapley


def one_hot(y_train: np.ndarray, y_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-hot rows over the union of labels (any label type), float32 like ODV's fetcher."""
    classes, inv = np.unique(np.concatenate([y_train, y_test]), return_inverse=True)
    eye = np.eye(len(classes), dtype=np.float32)
    codes = inv.reshape(-1)
    return eye[codes[: len(y_train)]], eye[codes[len(y_train) :]]


def run(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    k: int,
    batch_size: int = 32,
    threads: int | None = None,
) -> tuple[np.ndarray, float, dict[str, Any]]:
    """OpenDataVal KNN-Shapley values, the seconds the valuation took, and metadata."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    knn_shapley_cls = load_evaluator()

    t0 = time.perf_counter()
    yt, yv = one_hot(np.asarray(y_train), np.asarray(y_test))
    # float32 like OpenDataVal's DataFetcher; the evaluator needs it: its score tensor
    # takes the features' dtype while its label match is float32 (float64 features fail
    # with "Index put requires the source and destination dtypes match").
    xt = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32))
    xv = torch.from_numpy(np.ascontiguousarray(x_test, dtype=np.float32))
    yt_t, yv_t = torch.from_numpy(yt), torch.from_numpy(yv)
    prep = time.perf_counter() - t0

    evaluator = knn_shapley_cls(k_neighbors=k, batch_size=batch_size, random_state=0)
    t0 = time.perf_counter()
    evaluator.input_data(xt, yt_t, xv, yv_t)
    evaluator.train_data_values()
    values = evaluator.evaluate_data_values()
    seconds = time.perf_counter() - t0

    import opendataval

    meta = {
        "prep_seconds": prep,
        "k": k,
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        "opendataval_version": opendataval.__version__,
        "torch_version": torch.__version__,
        "x_dtype": str(xt.dtype),
    }
    return np.asarray(values, dtype=np.float64), seconds, meta


def self_test() -> None:
    """Three training points on a line, one test point, K = 1 (values worked by hand).

    x_train = 0, 1, 2 with labels 0, 1, 0; test point 0.1 with label 0.  Sorted by
    distance: 0, 1, 2.  s[2] = 1/3;  s[1] = 1/3 + (1/2)(0 - 1) = -1/6;
    s[0] = -1/6 + 1 * (1 - 0) = 5/6.  They sum to U(all) - U(empty) = 1.
    """
    x = np.array([[0.0], [1.0], [2.0]])
    values, _, meta = run(x, np.array([0, 1, 0]), np.array([[0.1]]), np.array([0]), k=1)
    expected = np.array([5 / 6, -1 / 6, 1 / 3])
    if not np.allclose(values, expected, rtol=0, atol=1e-6):  # float32 inside ODV
        raise SystemExit(f"self-test failed: got {values}, expected {expected}")
    print(f"self-test ok: opendataval {meta['opendataval_version']}, torch {meta['torch_version']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", help="npz with x_train, y_train, x_test, y_test")
    parser.add_argument("out", nargs="?", help="npz to write values and seconds to")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32, help="ODV's cdist block size")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args(argv)
    if args.self_test:
        self_test()
        return 0
    if not args.data or not args.out:
        parser.error("give DATA and OUT (or --self-test)")
    with np.load(args.data, allow_pickle=False) as d:
        arrays = [d[name] for name in ("x_train", "y_train", "x_test", "y_test")]
    values, seconds, meta = run(*arrays, k=args.k, batch_size=args.batch_size, threads=args.threads)
    np.savez(args.out, values=values, seconds=seconds, **meta)
    print(f"opendataval knn-shapley: n={len(values)} m={len(arrays[2])} k={args.k} {seconds:.3f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
