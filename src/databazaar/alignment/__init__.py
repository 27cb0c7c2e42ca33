"""Alignment: preference learning with and without rationales (DPO, ORPO, RDPO, RORPO);
language-only instruction tuning of vision-language models in :mod:`.multimodal`."""

from databazaar.alignment.evaluate import (
    evaluate_preference,
    implicit_reward_accuracy,
    mean_length,
    win_rate,
)
from databazaar.alignment.preference import (
    METHODS,
    PreferenceConfig,
    PreferenceResult,
    dpo_loss,
    orpo_loss,
    rationale_loss,
    train_preference,
)

__all__ = [
    "METHODS",
    "PreferenceConfig",
    "PreferenceResult",
    "dpo_loss",
    "evaluate_preference",
    "implicit_reward_accuracy",
    "mean_length",
    "orpo_loss",
    "rationale_loss",
    "train_preference",
    "win_rate",
]
