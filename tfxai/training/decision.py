"""The decisions a finished model carries, chosen on validation images: its temperature, its
decision threshold and its out-of-distribution guard, with the validation metrics they give.

One function for every model tfxai finishes (a training run, an ensemble of runs), so that the
threshold is always chosen on the probabilities the model produces when the threshold is applied:
after the same temperature, on images the model was not trained on, never on the images it is
later scored on.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .. import metrics as metrics_lib
from ..classifier import keras_classifier
from ..data import ImageSet, patient_id
from ..io.model_files import update_model_facts
from ..ood import OODGuard, fit_model_guard, guard_facts, store_guard


@dataclass(frozen=True)
class Policy:
    """How the threshold is chosen (:func:`tfxai.metrics.choose_threshold`: ``threshold_policy``,
    ``target_sensitivity``) and whether a temperature is fitted first (``calibrate``)."""

    threshold_policy: str = "fixed"
    target_sensitivity: float = 0.95
    calibrate: bool = False

    @classmethod
    def of(cls, config) -> "Policy":
        """The policy of a :class:`tfxai.training.TrainConfig`."""
        return cls(config.threshold_policy, config.target_sensitivity, config.calibrate)

    @classmethod
    def from_facts(cls, facts: dict) -> "Policy | None":
        """The policy a model's threshold was chosen by, from its facts (``threshold_policy``, or
        the training ``arguments`` of models saved before it was stored); None when unknown."""
        for stored, key in ((facts.get("threshold_policy"), "policy"), (facts.get("arguments"), "threshold_policy")):
            if isinstance(stored, dict) and stored.get(key) in metrics_lib.THRESHOLD_POLICIES:
                return cls(stored[key], float(stored.get("target_sensitivity", 0.95)), bool(stored.get("calibrate")))
        return None

    def to_dict(self) -> dict:
        return {"policy": self.threshold_policy, "target_sensitivity": self.target_sensitivity,
                "calibrate": self.calibrate}


@dataclass
class Decision:
    """``threshold`` on P(class 1); ``temperature`` (None: not calibrated); ``val_metrics``
    (:func:`tfxai.metrics.classification_metrics` plus ``ece``) on the images it was chosen on, and
    their 95 % intervals ``val_ci95`` (as ``tfxai evaluate`` computes them: for the model card);
    ``guard``: the fitted out-of-distribution guard (None when not fitted) and the share of the
    validation images it flags; ``parameters``: the model's."""

    threshold: float
    temperature: float | None
    val_metrics: dict
    policy: Policy
    val_ci95: dict
    parameters: int
    guard: OODGuard | None = None
    guard_flag_rate: float | None = None

    def facts(self) -> dict:
        """The model facts this decision sets."""
        out = {"threshold": self.threshold, "temperature": self.temperature,
               "threshold_policy": {**self.policy.to_dict(), "chosen_on": "validation"},
               "val_metrics": {k: v for k, v in self.val_metrics.items() if k != "confusion_matrix"},
               "val_ci95": self.val_ci95, "parameters": self.parameters}
        if self.guard is not None:
            out["ood"] = guard_facts(self.guard, self.guard_flag_rate, self.val_metrics.get("n"))
        return out


def decide(model, facts: dict, val_set: ImageSet, policy: Policy, train_images: np.ndarray | None = None,
           seed: int = 0) -> Decision:
    """Temperature (with ``policy.calibrate``), then the threshold on the temperature-scaled
    probabilities of ``model`` (a Keras classifier deciding with ``facts``) for the validation
    images ``val_set``, and the guard fitted on ``train_images`` (uint8 (N, S, S, C); None: no
    guard) and thresholded on the validation images."""
    labels = val_set.labels
    proba = keras_classifier(model, facts).raw_proba(val_set.images)
    temperature = None
    if policy.calibrate:
        temperature = metrics_lib.fit_temperature(labels, proba)
        proba = metrics_lib.apply_temperature(proba, temperature)
    threshold = metrics_lib.choose_threshold(labels, proba, policy.threshold_policy, policy.target_sensitivity)
    val_metrics = metrics_lib.classification_metrics(labels, proba, threshold)
    val_metrics["ece"], _ = metrics_lib.expected_calibration_error(labels, proba)
    ci = metrics_lib.confidence_intervals(labels, proba, threshold, [patient_id(p) for p in val_set.paths], seed=seed)
    guard, flag_rate = (fit_model_guard(model, train_images, val_set.images, seed) if train_images is not None
                        else (None, None))
    return Decision(threshold, temperature, val_metrics, policy, ci, int(model.count_params()), guard, flag_rate)


def store_decision(model_path: str, facts: dict, decision: Decision, **extra) -> dict:
    """Write ``decision`` (and ``extra`` facts) into the ``.keras`` file at ``model_path``; the
    training is marked finished. Returns the stored facts."""
    if decision.guard is not None:
        store_guard(model_path, decision.guard)
    facts = {**facts, **decision.facts(), "training": "finished", "trained": time.strftime("%Y-%m-%d"), **extra}
    update_model_facts(model_path, facts)
    return facts
