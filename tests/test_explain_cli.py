"""``tfxai explain`` end to end on a tiny trained model and synthetic X-ray files."""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from explain_helpers import synthetic_model

SIZE = 32


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from tfxai.io.atomic import write_json
    from tfxai.io.model_files import save_model

    model, _ = synthetic_model(SIZE)
    folder = tmp_path_factory.mktemp("model")
    path = str(folder / "best_model.keras")
    save_model(model, path)
    write_json(str(folder / "run_config.json"),
               {"class_names": ["NORMAL", "PNEUMONIA"], "image_size": SIZE, "channels": 1,
                "resize_mode": "pad", "threshold": 0.5})
    return path


@pytest.fixture(scope="module")
def xray_dir(tmp_path_factory):
    from tfxai.synthetic import write_synthetic_dataset

    root = str(tmp_path_factory.mktemp("xrays") / "chest_xray")
    write_synthetic_dataset(root, {"test": 6}, image_size=48, seed=3)
    return root


def _first_image(root: str, cls: str) -> str:
    folder = os.path.join(root, "test", cls)
    return os.path.join(folder, sorted(os.listdir(folder))[0])


def test_cli_explains_one_image_and_writes_figure_and_json(checkpoint, xray_dir, tmp_path, capsys):
    from tfxai.cli import main

    image = _first_image(xray_dir, "PNEUMONIA")
    out = tmp_path / "one"
    code = main(["explain", "--checkpoint", checkpoint, "--image", image, "--output-dir", str(out),
                 "--methods", "gradcam,gradcam++,lime", "--num-samples", "100", "--steps", "10",
                 "--no-progress"])
    assert code == 0
    figure = out / "xai_comparison.png"
    assert figure.stat().st_size > 10_000
    assert (out / "sample_xray.png").exists()
    result = json.loads((out / "explanations.json").read_text())
    assert result["methods"] == ["gradcam", "gradcam++", "lime"]
    (record,) = result["images"]
    assert record["true_label"] == "PNEUMONIA" and record["mask"] is not None
    assert record["predicted"] in ("NORMAL", "PNEUMONIA")
    for method, entry in record["methods"].items():
        assert entry["predicted"] == record["predicted"]
        assert 0.0 <= entry["probability"] <= 1.0 and entry["seconds"] > 0
        assert 0.0 <= entry["deletion_auc"] <= 1.0 and 0.0 <= entry["insertion_auc"] <= 1.0
        assert isinstance(entry["pointing_game"], bool) and 0 <= entry["energy_in_mask"] <= 1
        assert 0.0 <= entry["lung_energy"] <= 1.0 and 0.05 < entry["lung_area"] < 0.6  # synthetic lungs found
    assert result["summary"]["gradcam"]["lung_energy"] == pytest.approx(record["methods"]["gradcam"]["lung_energy"])
    assert set(record["agreement"]) == {"gradcam|gradcam++", "gradcam|lime", "gradcam++|lime"}
    assert record["methods"]["lime"]["params"]["num_samples"] == 100
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["method"] for r in rows] == ["gradcam", "gradcam++", "lime"]
    printed = capsys.readouterr().out
    assert "deletion_auc" in printed and "gradcam++" in printed


def test_cli_explains_a_folder_with_report(checkpoint, xray_dir, tmp_path):
    from tfxai.cli import main

    out = tmp_path / "folder"
    code = main(["explain", "--checkpoint", checkpoint, "--data-dir", os.path.join(xray_dir, "test"),
                 "--output-dir", str(out), "--methods", "gradcam,lime", "--num-samples", "60",
                 "--steps", "5", "--max-images", "4", "--no-progress", "--sanity-check"])
    assert code == 0
    result = json.loads((out / "explanations.json").read_text())
    labels = [r["true_label"] for r in result["images"]]
    assert len(labels) == 4 and set(labels) == {"NORMAL", "PNEUMONIA"}  # both classes chosen
    for record in result["images"]:
        assert (out / record["figure"]).exists()
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4 * 3 and "http" not in html
    sanity = result["sanity_check"]["gradcam"]
    assert sanity["spearman"][0] == 1.0 and len(sanity["spearman"]) >= 3
    assert set(result["summary"]) == {"gradcam", "lime"}


def test_cli_compare_reports_how_far_explanations_moved(checkpoint, xray_dir, tmp_path):
    from tfxai.cli import main

    out = tmp_path / "compare"
    code = main(["explain", "--compare", checkpoint, checkpoint, "--data-dir", xray_dir,
                 "--output-dir", str(out), "--methods", "gradcam,lime", "--num-samples", "60",
                 "--steps", "5", "--max-images", "2", "--no-progress"])
    assert code == 0
    result = json.loads((out / "comparison.json").read_text())
    assert result["prediction_agreement"] == 1.0
    for method in ("gradcam", "lime"):  # the same model twice: nothing moved
        assert result["summary"][method]["spearman"] == pytest.approx(1.0, abs=1e-4)
        assert result["summary"][method]["top_iou"] == pytest.approx(1.0, abs=1e-4)
        assert result["summary"][method]["delta_deletion_auc"] == pytest.approx(0.0, abs=1e-4)
    assert (out / "comparison.csv").exists()


def test_cli_compare_with_tflite_uses_lime_only(checkpoint, xray_dir, tmp_path):
    from tfxai.classifier import load_classifier, model_facts
    from tfxai.cli import main
    from tfxai.compress.tflite import export_tflite
    from tfxai.io.model_files import load_model

    tflite = str(tmp_path / "model.tflite")
    export_tflite(load_model(checkpoint), tflite, "float32", facts=model_facts(["NORMAL", "PNEUMONIA"], SIZE, 1))
    # A freshly loaded interpreter must answer a first batch of one image (explain's first call).
    assert load_classifier(tflite).predict_proba(np.zeros((1, SIZE, SIZE, 1))).shape == (1, 2)
    out = tmp_path / "compare_tflite"
    code = main(["explain", "--compare", checkpoint, tflite, "--image",
                 _first_image(xray_dir, "PNEUMONIA"), "--output-dir", str(out),
                 "--methods", "gradcam,lime", "--num-samples", "60", "--steps", "5",
                 "--no-progress"])
    assert code == 0
    result = json.loads((out / "comparison.json").read_text())
    assert result["methods"] == ["lime"] and result["skipped_methods"] == ["gradcam"]
    assert result["summary"]["lime"]["spearman"] > 0.9  # float32 TFLite = Keras within 1e-5


@pytest.mark.parametrize("argv, message", [
    (["--methods", "gradcam,magic"], "unknown method"),
    (["--target", "COVID"], "not a class"),
    (["--num-samples", "3"], "num-samples"),
])
def test_cli_reports_bad_arguments_in_one_line(checkpoint, xray_dir, tmp_path, capsys, argv, message):
    from tfxai.cli import main

    code = main(["explain", "--checkpoint", checkpoint, "--image", _first_image(xray_dir, "NORMAL"),
                 "--output-dir", str(tmp_path / "bad"), "--no-progress", *argv])
    assert code == 2
    assert message in capsys.readouterr().err


def test_cli_missing_image_is_a_user_error(checkpoint, tmp_path, capsys):
    from tfxai.cli import main

    missing = str(tmp_path / "nope.png")
    assert main(["explain", "--checkpoint", checkpoint, "--image", missing,
                 "--output-dir", str(tmp_path / "o")]) == 2
    assert missing in capsys.readouterr().err


def test_explain_batch_size_reaches_every_method(checkpoint, xray_dir):
    """`tfxai explain --batch-size 7`: every method's explainer makes model calls of at most 7 images."""
    from tfxai.cli import build_parser
    from tfxai.commands.explain import settings_from_args
    from tfxai.explain import METHODS
    from tfxai.explain.run import ModelExplainers

    args = build_parser(only="explain").parse_args(
        ["explain", "--checkpoint", checkpoint, "--image", _first_image(xray_dir, "NORMAL"),
         "--methods", ",".join(METHODS), "--batch-size", "7", "--output-dir", "unused"])
    explainers = ModelExplainers(checkpoint, settings_from_args(args)).explainers
    assert {m: e.batch_size for m, e in explainers.items()} == {m: 7 for m in METHODS}
