"""No output lands on an input or over a file tfxai did not write: outputs that would land on
inputs, ``--overwrite``, one command's files safe from another, overlays kept apart (issue 13)."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil

import pytest

from cli_helpers import one_line_error, write_xrays
from tfxai.cli import main
from tfxai.errors import OutputError
from tfxai.io.output_folder import MARKER_NAME, OutputFolder


def _digest(folder) -> str:
    """A hash of every file's path and bytes under ``folder``: equal before and after = untouched."""
    h = hashlib.sha256()
    for root, _dirs, files in sorted(os.walk(folder)):
        for name in sorted(files):
            path = os.path.join(root, name)
            h.update(os.path.relpath(path, folder).encode())
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()



def test_train_overwrite_onto_the_data_folder_is_refused_and_the_data_kept(tmp_path, synthetic_dir, capsys):
    data = tmp_path / "data"
    shutil.copytree(synthetic_dir, data)
    before = _digest(data)
    for out in (data, data / "train", tmp_path):  # is, lies inside, contains the data
        code = main(["train", "--data-dir", str(data), "--output-dir", str(out), "--overwrite", "--epochs", "1",
                     "--image-size", "32", "--no-progress"])
        assert code == 2
        assert "data" in one_line_error(capsys) or "tfxai did not write" in capsys.readouterr().err
    assert _digest(data) == before


def test_overwrite_refuses_the_current_folder_and_folders_with_foreign_files(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("my notes")
    monkeypatch.chdir(project)
    with pytest.raises(OutputError, match="current directory"):
        OutputFolder(".", "train", create=False).clear()
    with pytest.raises(OutputError, match="current directory"):
        OutputFolder(str(tmp_path), "train", create=False).clear()  # contains the current folder
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputError, match="not a folder tfxai wrote"):
        OutputFolder(str(project), "train", create=False).clear()
    assert (project / "notes.txt").read_text() == "my notes"


@pytest.mark.parametrize("foreign", ["notes.txt", "data/xray.png", ".hidden"])
def test_overwrite_never_removes_a_file_tfxai_did_not_write(tmp_path, foreign):
    run = OutputFolder(str(tmp_path / "run"), "train")
    with open(run.path("history.csv"), "w") as f:
        f.write("epoch\n")
    target = tmp_path / "run" / foreign
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("user data")
    with pytest.raises(OutputError, match="did not write"):
        OutputFolder(str(tmp_path / "run"), "train", create=False).clear()
    assert target.read_text() == "user data"
    target.unlink() if target.is_file() else None
    if foreign.startswith("data/"):
        (tmp_path / "run" / "data").rmdir()
    OutputFolder(str(tmp_path / "run"), "train", create=False).clear()  # only tfxai's files left: removed
    assert os.listdir(tmp_path / "run") == []


def test_a_command_never_replaces_another_commands_file(tmp_path):
    run = OutputFolder(str(tmp_path / "run"), "train")
    with open(run.path("run_config.json"), "w") as f:
        f.write("{}")
    with pytest.raises(OutputError, match="'tfxai train'"):
        OutputFolder(str(tmp_path / "run"), "export").claim(["run_config.json"])
    (tmp_path / "run" / "mine.txt").write_text("x")
    with pytest.raises(OutputError, match="not written by tfxai"):
        OutputFolder(str(tmp_path / "run"), "train").path("mine.txt")


def test_predict_refuses_to_write_the_overlay_onto_its_input(tmp_path, trained_run, capsys):
    image = write_xrays(tmp_path / "out", 1)[0]
    before = open(image, "rb").read()
    assert main(["predict", "--image", image, "--checkpoint", trained_run.model_path, "--output", image]) == 2
    one_line_error(capsys)
    assert open(image, "rb").read() == before


def test_export_into_the_training_run_folder_keeps_the_run_config(tmp_path, trained_run):
    run = tmp_path / "run"
    shutil.copytree(trained_run.output_dir, run)
    before = (run / "run_config.json").read_bytes()
    code = main(["export", "--checkpoint", str(run / "best_model.keras"), "--output-dir", str(run),
                 "--quantization", "float32", "--no-saved-model", "--no-onnx", "--no-progress"])
    assert code == 0
    assert (run / "run_config.json").read_bytes() == before
    assert (run / "model_float32.tflite").exists() and (run / "export_config.json").exists()
    # the run's own model card stays train's; the export's sidecar carries the same card
    assert json.loads((run / "model_float32.json").read_text())["model_card"] == json.loads(
        (run / "model_card.json").read_text())


def test_predict_twice_into_the_inbox_never_reads_its_own_overlays(tmp_path, trained_run):
    inbox = tmp_path / "inbox"
    write_xrays(inbox, 4)
    for _ in range(2):
        assert main(["predict", "--image", str(inbox), "--checkpoint", trained_run.model_path,
                     "--output", str(inbox / "predictions.csv"), "--no-progress"]) == 0
        rows = list(csv.DictReader(open(inbox / "predictions.csv")))
        assert len(rows) == 4
    assert (inbox / "overlays" / MARKER_NAME).exists()


def test_two_images_with_one_name_in_two_folders_get_two_overlays(tmp_path, trained_run):
    inbox = tmp_path / "inbox"
    write_xrays(inbox, 3, names=["ward1/scan.png", "ward2/scan.png", "ward2/scan.jpeg"])
    assert main(["predict", "--image", str(inbox), "--checkpoint", trained_run.model_path,
                 "--output", str(tmp_path / "p.csv"), "--no-progress"]) == 0
    overlays = sorted(os.path.relpath(os.path.join(r, f), tmp_path / "overlays")
                      for r, _, fs in os.walk(tmp_path / "overlays") for f in fs if not f.startswith("."))
    assert overlays == ["ward1/scan_gradcam.png", "ward2/scan_jpeg_gradcam.png", "ward2/scan_png_gradcam.png"]
