"""Nothing silently changes a decision or a number: facts that travel with the model, a model
without them stopped, spreadsheet formulas neutralised in CSVs, every image of a class counted (issue 13)."""
from __future__ import annotations

import csv
import json
import shutil

import pytest

from cli_helpers import one_line_error, write_xrays
from tfxai.cli import main
from tfxai.io.atomic import safe_cell, write_csv
from tfxai.io.model_files import read_model_facts


def test_a_model_copied_alone_decides_exactly_as_in_its_run_folder(tmp_path, trained_run, synthetic_dir):
    from tfxai.classifier import load_classifier

    alone = tmp_path / "copied.keras"
    shutil.copy(trained_run.model_path, alone)
    facts = read_model_facts(str(alone))
    assert facts["class_names"] == ["NORMAL", "PNEUMONIA"]
    assert facts["threshold"] == pytest.approx(trained_run.threshold)
    a, b = load_classifier(trained_run.model_path), load_classifier(str(alone))
    assert b.facts_source == "model file" and (b.class_names, b.threshold) == (a.class_names, a.threshold)


def test_a_model_without_facts_or_run_config_stops_predict_unless_threshold_is_given(tmp_path, trained_run, capsys):
    from tfxai.io.model_files import load_model, save_model

    bare = tmp_path / "bare.keras"
    save_model(load_model(trained_run.model_path), str(bare))  # no facts stored, no run_config.json beside
    image = write_xrays(tmp_path / "img", 1)[0]
    assert main(["predict", "--image", image, "--checkpoint", str(bare), "--output", str(tmp_path / "o.png")]) == 2
    assert "--threshold" in one_line_error(capsys)
    assert main(["predict", "--image", image, "--checkpoint", str(bare), "--output", str(tmp_path / "o.png"),
                 "--threshold", "0.5", "--class-names", "NORMAL,PNEUMONIA"]) == 0


def test_a_malformed_threshold_in_a_run_config_is_one_line(tmp_path, trained_run, capsys):
    from tfxai.io.model_files import load_model, save_model

    save_model(load_model(trained_run.model_path), str(tmp_path / "old.keras"))
    (tmp_path / "run_config.json").write_text(json.dumps({"class_names": ["NORMAL", "PNEUMONIA"],
                                                          "threshold": "high"}))
    image = write_xrays(tmp_path / "img", 1)[0]
    assert main(["predict", "--image", image, "--checkpoint", str(tmp_path / "old.keras")]) == 2
    assert "threshold" in one_line_error(capsys)


@pytest.mark.parametrize("text", ["=HYPERLINK(\"http://x\")", "+1+2", "-2+3", "@SUM(A1)", "\tx"])
def test_formula_cells_are_neutralised_in_every_csv(tmp_path, text):
    path = write_csv(str(tmp_path / "x.csv"), [{"name": text, "value": -0.5}])
    row = next(csv.DictReader(open(path)))
    assert row["name"] == "'" + text and row["value"] == "-0.5"
    assert safe_cell("NORMAL") == "NORMAL" and safe_cell(-3) == -3


def test_images_in_subfolders_of_a_class_folder_are_counted(tmp_path, caplog):
    from tfxai.data import scan_class_folders

    write_xrays(tmp_path / "train" / "NORMAL", 2)
    write_xrays(tmp_path / "train" / "PNEUMONIA", 4, names=["a.png", "virus/b.png", "virus/c.png", "bacteria/d.png"])
    with caplog.at_level("INFO", logger="tfxai.data.folders"):
        paths, labels, names = scan_class_folders(str(tmp_path / "train"))
    assert labels.tolist() == [0, 0, 1, 1, 1, 1]
    assert "3 of 4 files are in subfolders" in caplog.text
