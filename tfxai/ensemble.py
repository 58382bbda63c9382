"""Ensembles as one model: K trained classifiers averaged in logit space, saved as one ``.keras``
file that loads, predicts, evaluates, explains, serves and exports like any tfxai model.

How the members become one model, keeping every tfxai contract:

* each member is cut at its global pooling into a *body* (image -> its last feature maps) and a
  *head* (maps -> the features that enter its last Dense layer);
* the bodies' maps are concatenated (layer ``ensemble_maps``) and each head reads its own channels
  back (:class:`tfxai.layers.ChannelSlice`);
* the heads' features are concatenated (``ensemble_features``) and ONE Dense layer makes the
  output. Averaging the logits z_i = w_i . f_i + b_i of K members is exactly that Dense layer with
  kernel [w_1; ...; w_K] / K and bias mean(b_i), so the output is sigmoid(mean z_i) (softmax of the
  mean logits for more classes; tested against the members to 1e-6).

So the out-of-distribution guard reads the concatenated features (the input of the last Dense
layer, as for every tfxai model); Grad-CAM finds ``ensemble_maps`` as the last feature maps and
explains the *averaged* score with respect to every member's maps at once: ReLU of the sum of the
members' Grad-CAM maps taken before their ReLU, each member's channels weighted by the gradient of
the averaged score (Grad-CAM++ and Score-CAM use the same layer); TFLite needs only builtins
(concatenation, strided slice), so one ``.tflite`` file holds the whole ensemble.

**The threshold.** Averaging makes probabilities less extreme, so neither a member's threshold
nor one chosen on single models' out-of-fold predictions is the ensemble's. The ensemble's own
temperature, threshold and guard are chosen on the *ensemble's own* probabilities of a validation
split that no member trained on (:func:`tfxai.training.decision.decide`): the members must share
their validation split, checked by its fingerprint (``val_split`` in their facts). The fold models
of ``tfxai train --folds K`` share it (the folds partition the rest), and so do runs that differ
only in ``--seed`` with one ``--split-seed``. Scoring the ensemble on that split flatters, like any
validation; score it on images that chose nothing (out-of-fold images are not such images: every
fold but one trained on them).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np

from ._keras import keras
from .classifier import Classifier, model_facts
from .data import ImageSet, split_fingerprint
from .errors import DataError, ModelFileError
from .io.model_files import save_model
from .layers import ChannelSlice
from .model_card import CARD_JSON, CARD_MARKDOWN, write_model_card
from .training.decision import Decision, Policy, decide, store_decision

log = logging.getLogger(__name__)

ENSEMBLE_MODEL_NAME = "ensemble.keras"
# What writing an ensemble puts in its folder (OutputFolder.claim): the model and its card.
ENSEMBLE_ENTRIES = (ENSEMBLE_MODEL_NAME, CARD_JSON, CARD_MARKDOWN)
COMBINATION = ("the mean of the members' logits: one Dense layer over their concatenated features, "
               "kernel [w_1; ...; w_K] / K, bias mean(b_i)")
GRADCAM = ("Grad-CAM of the averaged score over all members' last feature maps at once (layer "
           "ensemble_maps): ReLU of the sum of the members' maps before their ReLU")
# Facts every member must share, and the ones the ensemble takes from its first member.
SHARED_FACTS = ("class_names", "image_size", "channels", "resize_mode")
KEPT_FACTS = ("resize_reason", "source_geometry", "preprocessing", "arguments", "val_split", "data")
_POOLING = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)


def split_member(model: keras.Model, index: int) -> tuple[keras.Model, keras.Model, keras.layers.Dense]:
    """(body: image -> last feature maps (N, h, w, c), head: maps -> features (N, D), its last
    Dense layer) of a flat tfxai classifier, cut at its one global pooling layer; ValueError naming
    the member when it has none (or several) or does not end in a Dense layer."""
    pools = [layer for layer in model.layers if isinstance(layer, _POOLING)]
    dense = model.layers[-1]
    if len(pools) != 1 or not isinstance(dense, keras.layers.Dense) or not dense.use_bias:
        raise ValueError(f"member {index} ({model.name!r}) must have one global pooling layer and end in a Dense "
                         f"layer with a bias (a tfxai classifier); got {len(pools)} pooling layer(s) and a final "
                         f"{type(dense).__name__}")
    body = keras.Model(model.inputs, pools[0].input, name=f"member{index}_body")
    head = keras.Model(pools[0].input, dense.input, name=f"member{index}_head")
    return body, head, dense


def averaged_head(denses: Sequence[keras.layers.Dense]) -> list[np.ndarray]:
    """[kernel (sum D_i, U), bias (U,)] of the Dense layer over the concatenated member features
    that outputs the mean of the members' logits."""
    kernels, biases = zip(*(d.get_weights() for d in denses))
    return [np.concatenate(kernels, axis=0) / len(denses), np.mean(biases, axis=0)]


def _check_alike(parts, models) -> None:
    """ValueError naming what differs between members that cannot be combined."""
    seen = {"input shape": {tuple(m.input_shape[1:]) for m in models},
            "output": {(d.units, getattr(d.activation, "__name__", "")) for _, _, d in parts},
            "feature-map grid": {tuple(body.output_shape[1:3]) for body, _, _ in parts}}
    for what, values in seen.items():
        if len(values) != 1:
            raise ValueError(f"ensemble members differ in {what} ({sorted(values)}): members are folds or seeds "
                             f"of one recipe (the same architecture and input size)")


def build_ensemble(models: Sequence[keras.Model]) -> keras.Model:
    """One Keras model averaging the logits of ``models`` (K >= 2 tfxai classifiers with one input
    shape, architecture grid and output): input raw pixels (N, S, S, C), output as the members'
    ((N, 1) sigmoid or (N, U) softmax). The members' layers are shared, not copied."""
    if len(models) < 2:
        raise ValueError(f"an ensemble needs at least 2 members, got {len(models)}")
    parts = [split_member(m, i + 1) for i, m in enumerate(models)]
    _check_alike(parts, models)
    image = keras.Input(models[0].input_shape[1:], name="image")
    maps = [body(image) for body, _, _ in parts]
    joined = keras.layers.Concatenate(axis=-1, name="ensemble_maps")(maps)
    features, start = [], 0
    for i, ((_, head, _), member_maps) in enumerate(zip(parts, maps)):
        stop = start + int(member_maps.shape[-1])
        features.append(head(ChannelSlice(start, stop, name=f"member{i + 1}_maps")(joined)))
        start = stop
    joined_features = keras.layers.Concatenate(name="ensemble_features")(features)
    dense = parts[0][2]
    out = keras.layers.Dense(dense.units, activation=dense.activation, name="predictions")(joined_features)
    model = keras.Model(image, out, name=f"ensemble_of_{len(models)}")
    model.get_layer("predictions").set_weights(averaged_head([d for _, _, d in parts]))
    return model


def check_members(members: Sequence[Classifier]) -> None:
    """ModelFileError naming the member whose decision facts differ from the first one's, or
    that was validated on other images (``val_split``), or that records no validation split."""
    def alike(key, a, b):  # class folders match case-insensitively everywhere in tfxai
        return [c.lower() for c in a] == [c.lower() for c in b] if key == "class_names" else a == b

    first = members[0]
    for m in members:
        for key in SHARED_FACTS:
            a, b = getattr(first, key), getattr(m, key)
            if not alike(key, a, b):
                raise ModelFileError(f"{m.path!r}: {key} {b!r} differs from {first.path!r}'s {a!r}; the members "
                                     f"of one ensemble decide on the same inputs")
        split = m.facts.get("val_split")
        if not isinstance(split, dict) or "sha256" not in split:
            raise ModelFileError(f"{m.path!r} records no validation split (trained before tfxai recorded it): the "
                                 f"ensemble's threshold must be chosen on images no member trained on; retrain it")
        if split["sha256"] != first.facts["val_split"]["sha256"]:
            raise ModelFileError(
                f"{m.path!r} was validated on other images than {first.path!r} ({split['n']} vs "
                f"{first.facts['val_split']['n']} images): members must share the validation split the "
                f"ensemble's threshold is chosen on; use the fold models of one `tfxai train --folds` run, "
                f"or runs that differ only in --seed with one --split-seed")


def ensemble_facts(members: Sequence[Classifier]) -> dict:
    """The facts of the ensemble of ``members`` before its own decision: the members' shared
    inputs and resize (issue 18's ``resize_mode``, ``resize_reason``, ``source_geometry``), its
    first member's arguments (so ``evaluate --split val`` re-creates the shared validation split)
    and one entry per member."""
    first = members[0]
    kept = {k: first.facts[k] for k in KEPT_FACTS if k in first.facts}
    kind = first.facts.get("model_type", "model")
    rows = [{"path": m.path, "model_type": m.facts.get("model_type"), "threshold": m.threshold,
             "temperature": m.temperature, "seed": (m.facts.get("arguments") or {}).get("seed"),
             "val_roc_auc": (m.facts.get("val_metrics") or {}).get("roc_auc")} for m in members]
    return {**model_facts(first.class_names, first.image_size, first.channels, first.resize_mode),
            **kept, "model_type": f"ensemble of {len(members)} x {kind}", "training": "unfinished",
            "ensemble": {"members": rows, "combination": COMBINATION, "gradcam": GRADCAM}}


def save_ensemble(model: keras.Model, path: str, facts: dict, decision: Decision, **extra) -> dict:
    """The one way an ensemble is written: the model with its facts, then its decision (threshold,
    temperature, guard), then its model card (:mod:`tfxai.model_card`: inside the file and as
    ``model_card.json``/``.md`` beside it). Returns the stored facts."""
    if not path.endswith(".keras"):
        raise ValueError(f"ensemble path must end in .keras, got {path!r}")
    save_model(model, path, facts)
    facts = store_decision(path, facts, decision, **extra)
    write_model_card(path)
    return facts


def make_ensemble(members: Sequence[Classifier], val_set: ImageSet, train_images: np.ndarray, path: str,
                  policy: Policy | None = None, seed: int = 0, data_root: str | None = None) -> tuple[dict, Decision]:
    """Build, decide and save the ensemble of ``members`` (Keras classifiers) at ``path``.

    ``val_set``: the validation split the members share (its fingerprint, with file names relative
    to ``data_root``, must equal theirs: DataError otherwise); the ensemble's temperature, threshold
    (``policy``, default the first member's) and guard thresholds are chosen there on its own
    probabilities; ``train_images`` uint8 (N, S, S, C) fit the guard. Returns (facts, decision).
    """
    if len(members) < 2:
        raise DataError(f"an ensemble needs at least 2 member models, got {len(members)}")
    check_members(members)
    recorded = members[0].facts["val_split"]
    found = split_fingerprint(val_set, data_root)
    if found["sha256"] != recorded["sha256"]:
        raise DataError(f"the validation images given ({found['n']}) are not the split the members were validated "
                        f"on ({recorded['n']} images): the ensemble's threshold must be chosen on images no member "
                        f"trained on; give the data the members were trained on")
    policy = policy or Policy.from_facts(members[0].facts) or Policy()
    model = build_ensemble([m.model for m in members])
    facts = ensemble_facts(members)
    decision = decide(model, facts, val_set, policy, train_images, seed)
    facts = save_ensemble(model, path, facts, decision)
    log.info("ensemble of %d members written to %s (threshold %.3f chosen on %d validation images)",
             len(members), os.path.normpath(path), decision.threshold, len(val_set))
    return facts, decision
