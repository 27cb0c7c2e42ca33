"""Data enrichment: DiPT perspective rationales and rationales for preference pairs.

* :mod:`databazaar.enrich.dipt` -- perspective-taking prompting around any generation
  backend, and SFT data enriched with perspective rationales (arXiv 2409.06241);
* :mod:`databazaar.enrich.rationales` -- general or detailed rationales for preference
  pairs written by any backend (arXiv 2407.14477);
* :mod:`databazaar.enrich.batches` -- the cached, resumable batch runner both use.
"""

from databazaar.enrich.batches import BatchCache, default_cache_path, item_key, run_batches
from databazaar.enrich.dipt import (
    MODES,
    DiPTAnswer,
    PerspectivePrompting,
    enrich_sft,
    extract_answer,
    parse_options,
)
from databazaar.enrich.rationales import STYLES, generate_rationales, rationale_request

__all__ = [
    "MODES",
    "STYLES",
    "BatchCache",
    "DiPTAnswer",
    "PerspectivePrompting",
    "default_cache_path",
    "enrich_sft",
    "extract_answer",
    "generate_rationales",
    "item_key",
    "parse_options",
    "rationale_request",
    "run_batches",
]
