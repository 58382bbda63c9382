"""Model cards: what a trained model is for, what it was trained and checked on, and its limits.

The sections follow Mitchell et al. 2019, "Model Cards for Model Reporting" (FAT* '19), as
Google's Model Card Toolkit and Hugging Face's model cards do: model details, intended use,
training data, evaluation (the paper's "metrics" and "quantitative analyses"), limitations
("caveats and recommendations") and ethical considerations, plus two sections a triage model
needs: its decision threshold and its out-of-distribution guard.

``tfxai train`` writes the card when a run finishes: ``model_card.json`` and ``model_card.md``
beside ``best_model.keras``, and ``model_card.json`` inside the ``.keras`` zip (so the card
travels with the file); a shift-aware run re-writes it with the ``shift_metrics.json`` results.
``tfxai export`` carries it into every file it writes. The JSON's top-level keys are
:data:`SECTIONS`, always all present (a section with nothing to say is ``null``).
"""
from __future__ import annotations

import json
import math
import os
import zipfile

from . import __version__
from .errors import ModelFileError
from .io.atomic import dumps_json, read_json, write_json, write_text
from .io.model_files import read_model_entry, read_model_facts, read_run_config, set_model_entry

# What every page and file that shows a model's answer says about its use (tfxai serve, the web app).
INTENDED_USE = ("Decision support only, not a diagnosis: a clinician must read every X-ray. This model has only "
                "been checked on the data it was validated on; performance changes across hospitals, X-ray "
                "machines and patient groups. Heatmaps show where the model looked, not where the disease is.")
SCHEMA = ("tfxai-model-card/1.0: the sections of Mitchell et al. 2019, 'Model Cards for Model Reporting' "
          "(as in Google's Model Card Toolkit and Hugging Face model cards)")
SECTIONS = ("schema", "model_details", "intended_use", "training_data", "evaluation", "decision_threshold",
            "ood_guard", "limitations", "ethical_considerations")
CARD_JSON = "model_card.json"  # beside the model, inside the .keras zip, in every export
CARD_MARKDOWN = "model_card.md"
SHIFT_METRICS_NAME = "shift_metrics.json"
SAVED_MODEL_EXTRA = "assets.extra"  # SavedModel's folder for files the graph does not load

# The README's "Intended use and limits", as lists.
PRIMARY_USES = (
    "research and teaching: how a chest X-ray classifier behaves, and why it decides as it does",
    "decision support for pneumonia triage (which X-rays to read first), with a clinician reading every X-ray",
)
PRIMARY_USERS = ("engineers and clinician-researchers who train, check and deploy models",
                 "clinicians using its output as a second look, never as the only reader")
OUT_OF_SCOPE = (
    "diagnosis, or any use in which no clinician reads the X-ray",
    "clinical use before prospective validation on data from the site of use (its hospitals, X-ray "
    "machines, patient population and image processing)",
    "patient groups, machines or image processing the training data did not include (e.g. adults "
    "for a model trained on children's X-rays)",
    "images other than frontal chest X-rays (the out-of-distribution guard flags many, not all)",
    "locating disease from the heatmaps: they show where the model looked, not where the disease is",
)
LIMITATIONS = (
    "Checked only on a validation split of the training data's own source: performance changes "
    "across hospitals, X-ray machines, patient populations and image processing, often a lot.",
    "Two classes only: other findings (tuberculosis, effusion, tumours, devices...) are not "
    "recognised and get one of the model's classes.",
    "Labels come from the source data set and carry its errors.",
    "Heatmaps (Grad-CAM and the others) show where the model looked, not where the disease is.",
)
CHOSEN_THRESHOLD_LIMIT = (
    "The threshold was chosen on the same validation images that give the validation metrics, so the "
    "threshold-dependent ones (sensitivity, specificity, precision, F1, accuracy) are optimistic; score "
    "images the model never saw with `tfxai evaluate`.")
KERMANY_LIMIT = ("Kermany et al. 2018 (the 'chest_xray' folders, also behind PneumoniaMNIST) holds children's "
                 "X-rays (1-5 years) from one hospital (Guangzhou Women and Children's Medical Center): a "
                 "model trained on it has seen no adults and no other hospital's machines.")
ETHICS = (
    "Decision support only: an unsupervised or over-trusted model (automation bias) can delay a "
    "diagnosis; a clinician must read every X-ray.",
    "Performance in subgroups (age, sex, ethnicity, disease type) is not measured: the usual data "
    "sets do not record them.",
    "Patient data stays local: tfxai trains and predicts offline. The model file holds no training "
    "image, but its out-of-distribution guard stores summary statistics (mean and principal "
    "components) of the training images' features and 16 x 16 thumbnails.",
    "A model trained on public data inherits that data's consent and licence terms.",
)
INTERVAL_METHOD = ("95 % intervals: Wilson score intervals for proportions (accuracy, sensitivity, specificity, "
                   "precision); percentile bootstrap over patients (1000 resamples) for ROC-AUC, PR-AUC and "
                   "F1, as `tfxai evaluate` computes them")
METRIC_ORDER = ("accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc", "pr_auc", "ece")
SHIFT_KEYS = ("standard_auc", "shift_auc", "threshold", "standard_spec", "shift_spec", "shift_sens",
              "synthetic_auc_mean", "synthetic_auc_worst", "synthetic_worst", "synthetic_spec_mean",
              "synthetic_spec_worst", "n_val", "n_shift", "target_sensitivity")


def _model_details(facts: dict, run_config: dict) -> dict:
    args = facts.get("arguments") or run_config.get("arguments") or {}
    options = dict(args.get("model_options") or {})
    size, channels = facts["image_size"], facts["channels"]
    names = facts["class_names"]
    recipe = args.get("recipe")
    return {
        "name": f"{recipe or facts.get('model_type', 'model')}: {' vs '.join(names)}, {size} px "
                f"{'grey' if channels == 1 else 'RGB'}",
        "tfxai_version": __version__,
        "date": facts.get("trained"),
        "model_type": facts.get("model_type"),
        "architecture": {"model_type": facts.get("model_type"), **options},
        "recipe": recipe,
        "parameters": facts.get("parameters"),
        "input": (run_config.get("input") or f"raw pixels, float32 in [0, 255], shape (N, {size}, {size}, "
                  f"{channels})") + f"; resize mode {facts.get('resize_mode')}",
        "output": (f"sigmoid probability of {names[1]} (the positive class)" if len(names) == 2
                   else f"softmax over the {len(names)} classes"),
        "class_names": list(names),
        "preprocessing": facts.get("preprocessing"),
        "training_settings": {k: args.get(k) for k in ("epochs", "batch_size", "learning_rate", "lr_schedule",
                                                       "ema_decay", "augment", "class_weighting",
                                                       "label_smoothing", "select_epoch", "seed") if k in args},
        "epochs_completed": run_config.get("epochs_completed"),
        "licence": "not set by training: whoever publishes the model chooses one (tfxai export --license "
                   "puts it in the Android file); the training data's own terms apply",
    }


def _training_data(facts: dict, run_config: dict) -> dict:
    data = run_config.get("data") or {}
    args = facts.get("arguments") or run_config.get("arguments") or {}
    if data.get("val_from_train"):
        split = (f"carved from the training images: {100 * float(args.get('val_fraction', 0.15)):g} % stratified by "
                 f"class, grouped by patient (no patient on both sides), seed {args.get('seed', 0)}")
    elif data:
        split = "the data set's own validation split"
    else:
        split = None
    out = {
        "source": data.get("source") or facts.get("data"),
        "class_counts": {"train": data.get("train_counts"), "validation": data.get("val_counts")},
        "validation_split": split,
        "skipped_files": len(data.get("skipped_files") or []),
        "max_train_images": args.get("max_train_images") or None,
    }
    geometry = facts.get("source_geometry")
    if isinstance(geometry, dict):
        out["geometry"] = geometry
        out["resize_mode"] = (f"{facts.get('resize_mode')}: how every image is brought to the model's square "
                              f"input, chosen from the training files' geometry"
                              + (f" ({facts['resize_reason']})" if facts.get("resize_reason") else ""))
    return out


def _evaluation(facts: dict, shift: dict | None) -> dict:
    metrics = facts.get("val_metrics") or {}
    ci = facts.get("val_ci95") or {}
    validation = None
    if metrics:
        validation = {
            "split": "validation",
            "n": metrics.get("n"),
            "threshold": metrics.get("threshold", facts.get("threshold")),
            "metrics": {k: metrics[k] for k in METRIC_ORDER if k in metrics},
            "ci95": {k: ci[k] for k in METRIC_ORDER if k in ci},
            "interval_method": INTERVAL_METHOD,
        }
    shift_part = None
    if shift:
        shift_part = {k: shift[k] for k in SHIFT_KEYS if k in shift}
        shift_part["protocol"] = ("shift-aware validation (tfxai train --holdout-pattern): one acquisition batch "
                                  "held out of training and model selection; batch-shift ROC-AUC and specificity "
                                  "at the standard-validation threshold for the target sensitivity, and "
                                  "synthetic scanner shifts of the held-out normal X-rays")
        if "split" in shift:
            shift_part["split"] = shift["split"]
    return {"validation": validation, "shift": shift_part,
            "test": None, "test_note": "not scored at training time: run `tfxai evaluate` on images the model "
                                       "never saw (a test split, another hospital)"}


def _stored_policy(facts: dict) -> dict:
    """How the threshold was chosen: the stored ``threshold_policy`` (tfxai.training.decision; an
    ensemble's may differ from its first member's training arguments), else the arguments."""
    stored = facts.get("threshold_policy")
    if isinstance(stored, dict) and "policy" in stored:
        return {"threshold_policy": stored["policy"], "target_sensitivity": stored.get("target_sensitivity")}
    return facts.get("arguments") or {}


def _policy(facts: dict) -> str:
    """The threshold policy that applied: binary models only choose one from data."""
    return _stored_policy(facts).get("threshold_policy", "fixed") if len(facts["class_names"]) == 2 else "argmax"


def _threshold(facts: dict) -> dict:
    args = _stored_policy(facts)
    policy = _policy(facts)
    return {
        "value": facts.get("threshold"),
        "positive_class": facts["class_names"][1] if len(facts["class_names"]) == 2 else None,
        "policy": policy,
        "target_sensitivity": args.get("target_sensitivity") if policy == "sensitivity" else None,
        "chosen_on": ("the validation split, never on test images" if policy in ("sensitivity", "youden")
                      else "not chosen from data (fixed), never on test images"),
        "temperature": facts.get("temperature"),
        "temperature_fitted_on": "the validation split" if facts.get("temperature") else None,
    }


def _ood(facts: dict) -> dict | None:
    ood = facts.get("ood")
    if not ood:
        return None
    return {
        "method": ood.get("method"),
        "false_alarm_rate_on_validation": ood.get("val_flag_rate"),
        "validation_images": ood.get("val_images"),
        "false_alarm_note": "the share of the validation X-rays (in distribution by construction) that the guard flags",
        "thresholds": {"features": ood.get("threshold"), "thumbnails": ood.get("thumbnail_threshold")},
        "fitted_on_images": ood.get("fitted_on_images"),
    }


def build_model_card(facts: dict, run_config: dict | None = None, shift_metrics: dict | None = None) -> dict:
    """The card of a finished training run as a dict with the keys :data:`SECTIONS`.

    ``facts``: what ``tfxai train`` stores inside the model (:func:`tfxai.io.model_files.read_model_facts`);
    ``run_config``: the run folder's ``run_config.json`` (class counts, split); ``shift_metrics``:
    ``shift_metrics.json`` of a shift-aware run, or None.
    """
    if not isinstance(facts, dict) or "class_names" not in facts:
        raise ValueError(f"facts must be a model's stored facts with class_names, got {type(facts).__name__}")
    if facts.get("training") != "finished":
        raise ValueError(f"a model card describes a finished training run; the facts say training "
                         f"{facts.get('training')!r}")
    run_config = run_config or {}
    source = str((run_config.get("data") or {}).get("source") or facts.get("data") or "").lower()
    limits = list(LIMITATIONS)
    if _policy(facts) in ("sensitivity", "youden"):
        limits.insert(1, CHOSEN_THRESHOLD_LIMIT)
    if "chest_xray" in source or "pneumoniamnist" in source:
        limits.insert(0, KERMANY_LIMIT)
    return _finite({
        "schema": SCHEMA,
        "model_details": _model_details(facts, run_config),
        "intended_use": {"primary_uses": list(PRIMARY_USES), "primary_users": list(PRIMARY_USERS),
                         "out_of_scope_uses": list(OUT_OF_SCOPE)},
        "training_data": _training_data(facts, run_config),
        "evaluation": _evaluation(facts, shift_metrics),
        "decision_threshold": _threshold(facts),
        "ood_guard": _ood(facts),
        "limitations": limits,
        "ethical_considerations": list(ETHICS),
    })


def _finite(obj):
    """NaN and infinities (a metric undefined on one class) as null: strict JSON, as browsers parse it."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


# ----------------------------------------------------------------------------- Markdown
def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, float) for x in v):
        return f"[{v[0]:.3f}, {v[1]:.3f}]"
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str)
    return "-" if v is None else str(v)


def _metrics_table(validation: dict) -> list[str]:
    rows = ["| metric | value | 95 % interval |", "|---|---|---|"]
    for k, v in validation["metrics"].items():
        rows.append(f"| {k} | {_value(v)} | {_value(validation['ci95'].get(k))} |")
    return rows


def _lines(section, depth: int = 0) -> list[str]:
    pad = "  " * depth
    if isinstance(section, dict):
        out = []
        for k, v in section.items():
            if isinstance(v, dict) and v and not all(isinstance(x, (int, float, str)) for x in v.values()):
                out += [f"{pad}- **{k.replace('_', ' ')}**:", *_lines(v, depth + 1)]
            elif isinstance(v, list) and v and all(isinstance(x, str) for x in v):
                out += [f"{pad}- **{k.replace('_', ' ')}**:", *[f"{pad}  - {x}" for x in v]]
            else:
                out.append(f"{pad}- **{k.replace('_', ' ')}**: {_value(v)}")
        return out
    if isinstance(section, list):
        return [f"{pad}- {_value(x) if not isinstance(x, str) else x}" for x in section]
    return [f"{pad}{_value(section)}"]


TITLES = {"ood_guard": "Out-of-distribution guard"}


def render_markdown(card: dict) -> str:
    """The card as Markdown: one ``##`` section per key of :data:`SECTIONS` (validation metrics as
    a table with their 95 % intervals)."""
    missing = [k for k in SECTIONS if k not in card]
    if missing:
        raise ValueError(f"a model card needs the sections {list(SECTIONS)}; missing {missing}")
    details = card["model_details"] or {}
    out = [f"# Model card: {details.get('name', 'tfxai model')}", "", f"_{card['schema']}_", ""]
    for key in SECTIONS[1:]:
        section = card[key]
        out += [f"## {TITLES.get(key, key.replace('_', ' ').capitalize())}", ""]
        if key == "evaluation" and section and section.get("validation"):
            val = section["validation"]
            out += [f"Validation ({val['n']} images, threshold {_value(val['threshold'])}):", "",
                    *_metrics_table(val), "", val["interval_method"] + ".", ""]
            section = {k: v for k, v in section.items() if k != "validation"}
        out += (_lines(section) if section is not None else ["- none recorded"]) + [""]
    return "\n".join(out)


# ----------------------------------------------------------------------------- files
def card_from_bytes(data: bytes, where: str) -> dict:
    """A card from JSON bytes; ModelFileError naming ``where`` when it is not a card."""
    try:
        card = json.loads(data)
    except ValueError as err:
        raise ModelFileError(f"{where}: the model card is not valid JSON: {err}") from err
    if not isinstance(card, dict) or any(k not in card for k in SECTIONS):
        raise ModelFileError(f"{where}: the model card must be a JSON object with the sections {list(SECTIONS)}")
    return card


def read_model_card(model_path: str) -> dict | None:
    """The card a model carries, or None (a model trained before tfxai wrote cards).

    ``.keras``: the ``model_card.json`` entry in the zip (or the facts' ``model_card`` of an
    exported copy); ``.tflite``: the Android file's packed ``model_card.json`` or the sidecar
    ``<name>.json``'s ``model_card``; a SavedModel folder: ``assets.extra/model_card.json``.
    """
    if os.path.isdir(model_path):
        path = os.path.join(model_path, SAVED_MODEL_EXTRA, CARD_JSON)
        return read_json(path, "model card") if os.path.exists(path) else None
    if not os.path.exists(model_path):
        raise ModelFileError(f"model file {model_path!r} does not exist")
    if model_path.endswith(".keras"):
        data = read_model_entry(model_path, CARD_JSON)
        if data is not None:
            return card_from_bytes(data, model_path)
        return (read_model_facts(model_path) or {}).get("model_card")
    if model_path.endswith(".tflite"):
        if zipfile.is_zipfile(model_path):  # an Android file: metadata files are a zip appended to it
            with zipfile.ZipFile(model_path) as z:
                if CARD_JSON in z.namelist():
                    return card_from_bytes(z.read(CARD_JSON), model_path)
        sidecar = os.path.splitext(model_path)[0] + ".json"
        return read_json(sidecar, "TFLite sidecar").get("model_card") if os.path.exists(sidecar) else None
    return None


def write_card_files(folder: str, card: dict) -> list[str]:
    """``model_card.json`` and ``model_card.md`` in ``folder`` (atomically). Returns their paths."""
    return [write_json(os.path.join(folder, CARD_JSON), card),
            write_text(os.path.join(folder, CARD_MARKDOWN), render_markdown(card))]


def write_model_card(model_path: str, card: dict | None = None) -> dict:
    """Store ``card`` inside the ``.keras`` file at ``model_path`` and write ``model_card.json`` and
    ``model_card.md`` beside it. Without ``card``, build it (:func:`build_model_card`) from the
    facts inside the model, the ``run_config.json`` beside it and, when present, its
    ``shift_metrics.json``. Returns the card."""
    if not model_path.endswith(".keras"):
        raise ValueError(f"a model card is stored in a .keras file, got {model_path!r}")
    if card is None:
        facts = read_model_facts(model_path)
        if facts is None:
            raise ModelFileError(f"{model_path!r} holds no tfxai facts to build a model card from")
        folder = os.path.dirname(os.path.abspath(model_path))
        shift_path = os.path.join(folder, SHIFT_METRICS_NAME)
        shift = read_json(shift_path, "shift metrics") if os.path.exists(shift_path) else None
        card = build_model_card(facts, read_run_config(model_path), shift)
    set_model_entry(model_path, CARD_JSON, dumps_json(card).encode())
    write_card_files(os.path.dirname(os.path.abspath(model_path)), card)
    return card


def summary(card: dict) -> str:
    """One sentence for short fields (the Android metadata description): validation ROC-AUC and
    sensitivity/specificity with their intervals, the threshold and the guard's false-alarm rate."""
    parts = []
    val = (card.get("evaluation") or {}).get("validation")
    if val:
        for k in ("roc_auc", "sensitivity", "specificity"):
            if k in val["metrics"]:
                ci = val["ci95"].get(k)
                parts.append(f"{k} {val['metrics'][k]:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""))
        parts = [f"validation ({val['n']} images, 95 % intervals): " + ", ".join(parts)]
    guard = card.get("ood_guard")
    if guard and guard.get("false_alarm_rate_on_validation") is not None:
        parts.append(f"out-of-distribution guard flags {guard['false_alarm_rate_on_validation']:.1%} of validation X-rays")
    return "; ".join(parts)
