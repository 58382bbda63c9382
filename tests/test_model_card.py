"""Model cards (tfxai.model_card): written by training inside and beside the model, with the facts
that the run measured; built from stored facts; read back from every kind of model file."""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tfxai.io.model_files import read_model_facts, read_run_config
from tfxai.model_card import (CARD_JSON, CARD_MARKDOWN, SECTIONS, build_model_card, read_model_card,
                              render_markdown, write_model_card)


def _without_card(src: str, dst: Path) -> str:
    """A copy of the model at ``src`` without its model_card.json entry (a model trained before cards)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as b:
        for item in a.infolist():
            if item.filename != CARD_JSON:
                b.writestr(item, a.read(item.filename))
    return str(dst)


def test_a_trained_model_carries_its_card_inside_and_beside_it(trained_run):
    card = read_model_card(trained_run.model_path)
    folder = Path(trained_run.output_dir)
    assert card == json.loads((folder / CARD_JSON).read_text())
    assert list(card) == list(SECTIONS) and "Mitchell et al. 2019" in card["schema"]
    counts = card["training_data"]["class_counts"]
    assert counts == {"train": {"NORMAL": 80, "PNEUMONIA": 80}, "validation": {"NORMAL": 30, "PNEUMONIA": 30}}
    val = card["evaluation"]["validation"]
    facts = read_model_facts(trained_run.model_path)
    assert val["n"] == 60 and val["metrics"]["roc_auc"] == pytest.approx(facts["val_metrics"]["roc_auc"])
    for k in ("accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc", "pr_auc"):
        low, high = val["ci95"][k]
        assert 0.0 <= low <= val["metrics"][k] <= high <= 1.0, k
    assert card["evaluation"]["shift"] is None  # no --holdout-pattern
    assert card["decision_threshold"]["value"] == pytest.approx(trained_run.threshold)
    assert card["decision_threshold"]["chosen_on"].endswith("never on test images")
    assert card["model_details"]["parameters"] == facts["parameters"] > 1000
    assert card["model_details"]["model_type"] == "custom_cnn"
    assert "diagnosis" in card["intended_use"]["out_of_scope_uses"][0]
    assert any("where the model looked, not where the disease is" in x for x in card["limitations"])
    assert card["ethical_considerations"]
    markdown = (folder / CARD_MARKDOWN).read_text()
    assert markdown == render_markdown(card)
    assert "## Intended use" in markdown and "| roc_auc |" in markdown and "## Out-of-distribution guard" in markdown


def test_the_cards_false_alarm_rate_is_the_share_of_validation_xrays_the_guard_flags(trained_run, synthetic_dir):
    from tfxai.classifier import load_classifier
    from tfxai.data import load_splits

    clf = load_classifier(trained_run.model_path)
    val = load_splits(synthetic_dir, clf.image_size, clf.channels, clf.resize_mode, cache_dir=None,
                      progress=False).val
    flagged = np.mean([r.flag for r in clf.check_ood(val.images)])
    guard = read_model_card(trained_run.model_path)["ood_guard"]
    assert guard["false_alarm_rate_on_validation"] == pytest.approx(flagged)
    assert guard["validation_images"] == len(val) == 60
    assert guard["thresholds"]["features"] == pytest.approx(clf.ood.threshold)


def _finished_facts(trained_run) -> tuple[dict, dict]:
    return read_model_facts(trained_run.model_path), read_run_config(trained_run.model_path)


def test_shift_metrics_and_source_geometry_enter_the_card_when_present(trained_run):
    facts, run = _finished_facts(trained_run)
    shift = {"standard_auc": 0.97, "shift_auc": 0.91, "shift_spec": 0.7, "threshold": 0.4, "n_shift": 120,
             "target_sensitivity": 0.93, "split": {"holdout_pattern": "NORMAL2-*"}}
    geometry = {"aspect_ratio": {"min": 1.0, "max": 1.0}, "all_square": True}
    card = build_model_card({**facts, "source_geometry": geometry, "resize_mode": "squash"}, run, shift)
    assert card["evaluation"]["shift"]["shift_auc"] == 0.91
    assert card["evaluation"]["shift"]["split"] == {"holdout_pattern": "NORMAL2-*"}
    assert card["training_data"]["geometry"] == geometry
    assert card["training_data"]["resize_mode"].startswith("squash")
    plain = build_model_card({k: v for k, v in facts.items() if k != "source_geometry"}, run)
    assert "geometry" not in plain["training_data"] and plain["evaluation"]["shift"] is None
    assert "| roc_auc |" in render_markdown(card)


def test_undefined_metrics_are_null_so_the_card_is_strict_json(trained_run):
    facts, run = _finished_facts(trained_run)
    one_class = {**facts["val_metrics"], "roc_auc": float("nan"), "pr_auc": float("nan")}
    card = build_model_card({**facts, "val_metrics": one_class}, run)
    assert card["evaluation"]["validation"]["metrics"]["roc_auc"] is None
    json.dumps(card, allow_nan=False)
    assert "| roc_auc | - |" in render_markdown(card)


def test_a_card_describes_finished_runs_only(trained_run):
    facts, run = _finished_facts(trained_run)
    with pytest.raises(ValueError, match="'unfinished'"):
        build_model_card({**facts, "training": "unfinished"}, run)
    with pytest.raises(ValueError, match="sections"):
        render_markdown({"schema": "x"})


def test_a_model_trained_before_cards_reads_as_none_and_can_get_one(trained_run, tmp_path):
    old = _without_card(trained_run.model_path, tmp_path / "old" / "best_model.keras")
    assert read_model_card(old) is None
    shutil.copy(Path(trained_run.output_dir) / "run_config.json", tmp_path / "old" / "run_config.json")
    card = write_model_card(old)
    assert read_model_card(old) == card and (tmp_path / "old" / CARD_MARKDOWN).exists()
    assert card["training_data"]["class_counts"]["train"] == {"NORMAL": 80, "PNEUMONIA": 80}


def test_every_default_export_carries_the_card(trained_run, tmp_path):
    from tfxai.cli import main
    from tfxai.model_card import SAVED_MODEL_EXTRA

    out = tmp_path / "export"
    assert main(["export", "--checkpoint", trained_run.model_path, "--quantization", "float32",
                 "--output-dir", str(out), "--no-onnx", "--no-progress"]) == 0
    card = read_model_card(trained_run.model_path)
    assert json.loads((out / "model_float32.json").read_text())["model_card"] == card
    assert read_model_card(str(out / "model_float32.tflite")) == card
    assert read_model_card(str(out / "model_saved_model")) == card
    assert (out / "model_saved_model" / SAVED_MODEL_EXTRA / CARD_MARKDOWN).read_text() == render_markdown(card)
    assert json.loads((out / CARD_JSON).read_text()) == card and (out / CARD_MARKDOWN).exists()
    assert "model_card" not in json.loads((out / "export_config.json").read_text())


def test_exporting_a_model_without_a_card_says_so_and_writes_none(trained_run, tmp_path, capsys):
    from tfxai.cli import main

    old = _without_card(trained_run.model_path, tmp_path / "old" / "best_model.keras")
    out = tmp_path / "export"
    assert main(["export", "--checkpoint", old, "--quantization", "float32", "--output-dir", str(out),
                 "--no-onnx", "--no-saved-model", "--no-progress"]) == 0
    assert "has no model card" in capsys.readouterr().out
    assert not (out / CARD_JSON).exists() and read_model_card(str(out / "model_float32.tflite")) is None
