"""Issue 13: no user mistake destroys data or silently changes a diagnosis.

One test (or a parametrized table) per class of problem: outputs that would land on inputs,
``--overwrite``, decisions that depend on files beside the model, spreadsheet formulas in CSVs,
hostile or huge files, and every command's out-of-range flags.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import struct
import threading
import zlib

import cv2
import numpy as np
import pytest

from tfxai.cli import main
from tfxai.errors import OutputError
from tfxai.io.atomic import safe_cell, write_csv
from tfxai.io.model_files import read_model_facts
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


def _one_line_error(capsys, flag: str | None = None) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    if flag:
        assert flag in lines[0], err
    return lines[0]


def _xrays(folder, n: int = 3, size: int = 40, names=None):
    """A few grey synthetic X-ray-like PNGs."""
    from tfxai.synthetic import make_synthetic_xrays

    os.makedirs(folder, exist_ok=True)
    data = make_synthetic_xrays(n, size, seed=3)
    names = names or [f"scan{i}.png" for i in range(n)]
    paths = []
    for img, name in zip(data.images, names):
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        assert cv2.imwrite(path, img)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------- data loss
def test_train_overwrite_onto_the_data_folder_is_refused_and_the_data_kept(tmp_path, synthetic_dir, capsys):
    data = tmp_path / "data"
    shutil.copytree(synthetic_dir, data)
    before = _digest(data)
    for out in (data, data / "train", tmp_path):  # is, lies inside, contains the data
        code = main(["train", "--data-dir", str(data), "--output-dir", str(out), "--overwrite", "--epochs", "1",
                     "--image-size", "32", "--no-progress"])
        assert code == 2
        assert "data" in _one_line_error(capsys) or "tfxai did not write" in capsys.readouterr().err
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
    image = _xrays(tmp_path / "out", 1)[0]
    before = open(image, "rb").read()
    assert main(["predict", "--image", image, "--checkpoint", trained_run.model_path, "--output", image]) == 2
    _one_line_error(capsys)
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
    _xrays(inbox, 4)
    for _ in range(2):
        assert main(["predict", "--image", str(inbox), "--checkpoint", trained_run.model_path,
                     "--output", str(inbox / "predictions.csv"), "--no-progress"]) == 0
        rows = list(csv.DictReader(open(inbox / "predictions.csv")))
        assert len(rows) == 4
    assert (inbox / "overlays" / MARKER_NAME).exists()


def test_two_images_with_one_name_in_two_folders_get_two_overlays(tmp_path, trained_run):
    inbox = tmp_path / "inbox"
    _xrays(inbox, 3, names=["ward1/scan.png", "ward2/scan.png", "ward2/scan.jpeg"])
    assert main(["predict", "--image", str(inbox), "--checkpoint", trained_run.model_path,
                 "--output", str(tmp_path / "p.csv"), "--no-progress"]) == 0
    overlays = sorted(os.path.relpath(os.path.join(r, f), tmp_path / "overlays")
                      for r, _, fs in os.walk(tmp_path / "overlays") for f in fs if not f.startswith("."))
    assert overlays == ["ward1/scan_gradcam.png", "ward2/scan_jpeg_gradcam.png", "ward2/scan_png_gradcam.png"]


# ----------------------------------------------------------------------------- silent changes
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
    image = _xrays(tmp_path / "img", 1)[0]
    assert main(["predict", "--image", image, "--checkpoint", str(bare), "--output", str(tmp_path / "o.png")]) == 2
    assert "--threshold" in _one_line_error(capsys)
    assert main(["predict", "--image", image, "--checkpoint", str(bare), "--output", str(tmp_path / "o.png"),
                 "--threshold", "0.5", "--class-names", "NORMAL,PNEUMONIA"]) == 0


def test_a_malformed_threshold_in_a_run_config_is_one_line(tmp_path, trained_run, capsys):
    from tfxai.io.model_files import load_model, save_model

    save_model(load_model(trained_run.model_path), str(tmp_path / "old.keras"))
    (tmp_path / "run_config.json").write_text(json.dumps({"class_names": ["NORMAL", "PNEUMONIA"],
                                                          "threshold": "high"}))
    image = _xrays(tmp_path / "img", 1)[0]
    assert main(["predict", "--image", image, "--checkpoint", str(tmp_path / "old.keras")]) == 2
    assert "threshold" in _one_line_error(capsys)


@pytest.mark.parametrize("text", ["=HYPERLINK(\"http://x\")", "+1+2", "-2+3", "@SUM(A1)", "\tx"])
def test_formula_cells_are_neutralised_in_every_csv(tmp_path, text):
    path = write_csv(str(tmp_path / "x.csv"), [{"name": text, "value": -0.5}])
    row = next(csv.DictReader(open(path)))
    assert row["name"] == "'" + text and row["value"] == "-0.5"
    assert safe_cell("NORMAL") == "NORMAL" and safe_cell(-3) == -3


def test_images_in_subfolders_of_a_class_folder_are_counted(tmp_path, caplog):
    from tfxai.data import scan_class_folders

    _xrays(tmp_path / "train" / "NORMAL", 2)
    _xrays(tmp_path / "train" / "PNEUMONIA", 4, names=["a.png", "virus/b.png", "virus/c.png", "bacteria/d.png"])
    with caplog.at_level("INFO", logger="tfxai.data.folders"):
        paths, labels, names = scan_class_folders(str(tmp_path / "train"))
    assert labels.tolist() == [0, 0, 1, 1, 1, 1]
    assert "3 of 4 files are in subfolders" in caplog.text


# ----------------------------------------------------------------------------- hostile files
def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (its pixel data is a stub)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_a_gigapixel_header_is_refused_before_decoding():
    from tfxai.data import decode_bytes

    with pytest.raises(ValueError, match="over the limit|decompression bomb"):
        decode_bytes(_png_header(30000, 30000), "bomb.png")


def test_the_pixel_limit_is_configurable(tmp_path, monkeypatch):
    from tfxai.data import decode_image

    path = _xrays(tmp_path, 1, size=40)[0]
    assert decode_image(path).shape == (40, 40, 1)
    monkeypatch.setenv("TFXAI_MAX_PIXELS", "1000")
    with pytest.raises(ValueError, match=r"40x40 pixels, over the limit of 1,000"):
        decode_image(path)


def _jpeg_header(width: int, height: int) -> bytes:
    """A real 16 x 16 JPEG whose frame header (SOF0) is rewritten to declare ``width`` x ``height``:
    a valid-looking large X-ray in a few hundred bytes, never decoded here."""
    ok, buf = cv2.imencode(".jpeg", np.full((16, 16), 128, np.uint8))
    data = bytearray(buf.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_a_valid_image_over_the_limit_names_its_size_the_limit_and_how_to_raise_it(tmp_path, trained_run, capsys):
    """Issue 22: a 15000 x 15000 JPEG (225 Mpx, over Pillow's own 179 Mpx bomb limit) is refused by
    tfxai's limit, whose message says how to raise it; Pillow's limit is left as it was."""
    from PIL import Image

    from tfxai.data import decode_bytes
    from tfxai.data.decode import _raster_size

    big = _jpeg_header(15000, 15000)
    pil_limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ValueError) as err:
        decode_bytes(big, "big.jpeg")
    message = str(err.value)
    assert "15000x15000 pixels" in message and "50,000,000 pixels" in message
    assert "TFXAI_MAX_PIXELS=225000000" in message and "bomb" not in message
    # Pillow's own limit does not stop the header read (tfxai's limit decides), and is restored.
    assert _raster_size(big, "big.jpeg") == (15000, 15000)
    assert Image.MAX_IMAGE_PIXELS == pil_limit
    # The same line reaches the user of `tfxai predict` on a folder.
    inbox = tmp_path / "inbox"
    _xrays(inbox, 1)
    (inbox / "big.jpeg").write_bytes(big)
    assert main(["predict", "--image", str(inbox), "--checkpoint", trained_run.model_path, "--output",
                 str(tmp_path / "p.csv"), "--no-gradcam", "--no-progress"]) == 0
    assert "15000x15000 pixels, over the limit of 50,000,000 pixels" in capsys.readouterr().out


def test_fifo_and_device_links_are_skipped_not_read(tmp_path, trained_run):
    inbox = tmp_path / "inbox"
    _xrays(inbox, 2)
    os.mkfifo(inbox / "pipe.jpeg")
    os.symlink("/dev/zero", inbox / "zero.png")
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("code", main(
        ["predict", "--image", str(inbox), "--checkpoint", trained_run.model_path,
         "--output", str(tmp_path / "p.csv"), "--no-gradcam", "--no-progress"])), daemon=True)
    worker.start()
    worker.join(120)
    assert not worker.is_alive(), "predict hung on a FIFO"
    assert result["code"] == 0
    assert len(list(csv.DictReader(open(tmp_path / "p.csv")))) == 2


def test_odd_file_names_never_abort_a_folder_run(tmp_path, trained_run, capsys):
    inbox = tmp_path / "inbox"
    _xrays(inbox, 2, names=["cost$5$.png", "plain.png"])
    src = os.path.join(str(inbox), "plain.png")
    os.rename(os.fsencode(src), os.fsencode(str(inbox)) + b"/caf\xe9.png")  # not valid UTF-8
    (inbox / "huge.png").write_bytes(_png_header(20000, 20000))
    assert main(["predict", "--image", str(inbox), "--checkpoint", trained_run.model_path,
                 "--output", str(tmp_path / "p.csv"), "--no-progress"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "p.csv", encoding="utf-8")))
    assert len(rows) == 2 and any("\\xe9" in r["file"] for r in rows)
    assert "skipped 1 unreadable file(s)" in capsys.readouterr().out


# ----------------------------------------------------------------------------- flags
BAD_FLAGS = {
    "train": [("--epochs", "0"), ("--image-size", "100000"), ("--learning-rate", "inf"), ("--lr", "nan"),
              ("--val-fraction", "0.9"), ("--patience", "-3"), ("--max-train-images", "0"),
              ("--max-train-images", "-5"), ("--target-sensitivity", "1.5"), ("--batch-size", "0"),
              ("--label-smoothing", "0.7"), ("--model-options", "[1]"), ("--seed", "-1")],
    "evaluate": [("--tta", "-3"), ("--threshold", "2"), ("--target-sensitivity", "1.5")],
    "predict": [("--threshold", "-0.1"), ("--batch-size", "0")],
    "explain": [("--num-samples", "-1"), ("--max-images", "0"), ("--steps", "1"), ("--batch-size", "0")],
    "export": [("--latency-runs", "0"), ("--calibration-images", "0"), ("--eval-images", "-5"),
               ("--name", "../x"), ("--pqat-epochs", "-1")],
    "prune": [("--sparsities", "x"), ("--epochs", "0"), ("--image-size", "8"), ("--frequency", "0"),
              ("--learning-rate", "0")],
    "demo": [("--image-size", "8"), ("--epochs", "0")],
}
REQUIRED = {
    "train": ["--data-dir", "d"], "evaluate": ["--checkpoint", "m.keras"], "explain": ["--checkpoint", "m.keras",
    "--image", "x.png", "--output-dir", "o"], "predict": ["--checkpoint", "m.keras", "--image", "x.png"],
    "export": ["--checkpoint", "m.keras"], "prune": ["--data-dir", "d"], "demo": [],
}


@pytest.mark.parametrize("command,flag,value", [(c, f, v) for c, rows in BAD_FLAGS.items() for f, v in rows])
def test_every_out_of_range_flag_is_one_line_with_exit_2(command, flag, value, capsys):
    assert main([command, *REQUIRED[command], flag, value]) == 2
    _one_line_error(capsys, flag)


@pytest.mark.parametrize("options,field", [('{"width": -4}', "width"), ('{"colour": 1}', "colour")])
def test_bad_model_options_are_named_before_any_work(tmp_path, synthetic_dir, capsys, options, field):
    assert main(["train", "--data-dir", synthetic_dir, "--output-dir", str(tmp_path / "o"),
                 "--model-options", options, "--no-progress"]) == 2
    line = _one_line_error(capsys, "--model-options")
    assert field in line
    assert not (tmp_path / "o").exists()


def test_unknown_layer_is_one_line(tmp_path, trained_run, capsys):
    image = _xrays(tmp_path / "img", 1)[0]
    assert main(["explain", "--checkpoint", trained_run.model_path, "--image", image, "--output-dir",
                 str(tmp_path / "x"), "--methods", "gradcam", "--layer", "no_such_layer"]) == 2
    assert "no_such_layer" in _one_line_error(capsys)


@pytest.mark.parametrize("command", ["evaluate", "explain", "export"])
def test_an_output_dir_that_is_a_file_is_one_line(tmp_path, trained_run, synthetic_dir, command, capsys):
    target = tmp_path / "taken"
    target.write_text("x")
    args = {"evaluate": ["--data-dir", synthetic_dir],
            "explain": ["--image", _xrays(tmp_path / "i", 1)[0], "--methods", "gradcam"],
            "export": ["--quantization", "float32"]}[command]
    assert main([command, "--checkpoint", trained_run.model_path, *args, "--output-dir", str(target)]) == 2
    assert "is an existing file" in _one_line_error(capsys)
    assert target.read_text() == "x"


def test_an_unwritable_output_folder_stops_before_the_work(trained_run, synthetic_dir, capsys):
    # /proc refuses new folders even to root: the check runs before any image is decoded.
    assert main(["evaluate", "--checkpoint", trained_run.model_path, "--data-dir", synthetic_dir,
                 "--output-dir", "/proc/tfxai-cannot-write/eval"]) == 2
    assert "cannot write" in _one_line_error(capsys)


def test_a_cache_dir_that_is_a_file_is_one_line(tmp_path, synthetic_dir, capsys):
    (tmp_path / "cache").write_text("x")
    assert main(["train", "--data-dir", synthetic_dir, "--output-dir", str(tmp_path / "o"), "--cache-dir",
                 str(tmp_path / "cache"), "--epochs", "1", "--image-size", "32", "--no-progress"]) == 2
    assert "cache" in _one_line_error(capsys)


def test_debug_shows_the_traceback(tmp_path, capsys):
    with pytest.raises(Exception):
        main(["predict", "--debug", "--image", str(tmp_path), "--checkpoint", str(tmp_path / "none.keras")])


# ----------------------------------------------------------------------------- training runs
def _tiny(data_dir, out, **kw):
    from tfxai.training import TrainConfig

    base = dict(epochs=2, image_size=32, batch_size=32, model_options={"width": 8, "depth": 2},
                cache_dir=None, verbose=0)
    return TrainConfig(data_dir, "custom_cnn", str(out), **{**base, **kw})


class _Poison:
    """Callbacks for fault injection; built lazily so importing this module stays light."""

    @staticmethod
    def nan_weights():
        from tfxai._keras import keras

        class NaNWeights(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                layer = self.model.get_layer("predictions")
                layer.set_weights([w * np.nan for w in layer.get_weights()])
        return NaNWeights()

    @staticmethod
    def disk_full():
        import errno

        from tfxai._keras import keras

        class DiskFull(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch == 1:
                    raise OSError(errno.ENOSPC, "No space left on device")
        return DiskFull()

    @staticmethod
    def kill_in_first_epoch():
        from tfxai._keras import keras

        class Kill(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                raise KeyboardInterrupt("simulated kill")
        return Kill()


def test_a_diverging_run_stops_and_saves_no_nan_model(tmp_path, synthetic_dir):
    from tfxai.errors import TfxaiError
    from tfxai.training import train

    with pytest.raises(TfxaiError, match="diverged"):
        train(_tiny(synthetic_dir, tmp_path / "nan"), callbacks=[_Poison.nan_weights()])
    assert not (tmp_path / "nan" / "best_model.keras").exists()


def test_a_full_disk_is_one_message_and_the_run_resumes(tmp_path, synthetic_dir):
    from tfxai.training import train

    with pytest.raises(OutputError, match="disk is full"):
        train(_tiny(synthetic_dir, tmp_path / "run", epochs=3), callbacks=[_Poison.disk_full()])
    assert json.load(open(tmp_path / "run" / "run_config.json"))["status"] == "running"
    r = train(_tiny(synthetic_dir, tmp_path / "run", epochs=3))
    assert r.output_dir == str(tmp_path / "run") and r.resumed_from_epoch >= 1


def _train_argv(data_dir, out) -> list[str]:
    return ["train", "--data-dir", str(data_dir), "--output-dir", str(out), "--model-type", "custom_cnn",
            "--epochs", "3", "--image-size", "32", "--model-options", json.dumps({"width": 8, "depth": 2}),
            "--cache-dir", "none", "--no-progress"]


def _history_epochs(run) -> list[int]:
    """history.csv's epoch column as written: every row, none merged."""
    with open(os.path.join(run, "history.csv"), newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def _assert_stopped_whole(run) -> None:
    """After a failed run: every file under its final name is whole, nothing temporary is left,
    and the run is marked unfinished (so the same command resumes it)."""
    from tfxai.io.model_files import load_model

    assert json.load(open(run / "run_config.json"))["status"] == "running"
    if (run / "best_model.keras").exists():
        load_model(str(run / "best_model.keras"))
    if (run / "history.csv").exists():
        assert (run / "history.csv").read_bytes().endswith(b"\n")
        _history_epochs(run)
    leftovers = [os.path.join(root, name) for root, dirs, files in os.walk(run) for name in dirs + files
                 if name.startswith(".tmp-") or "_temp" in name or "tempstate" in name]
    assert leftovers == []


def test_a_full_disk_while_saving_the_resume_checkpoint_is_one_line_and_the_run_resumes(
        tmp_path, synthetic_dir, monkeypatch, capsys):
    """Issue 22: TensorFlow's ResourceExhaustedError from the BackupAndRestore save (what a full
    disk raises there) is one line naming the folder and the space needed; the same command
    resumes once there is room."""
    import tensorflow as tf

    out = tmp_path / "run"
    real_save, saves = tf.train.CheckpointManager.save, []

    def full_on_the_second_save(self, *args, **kwargs):
        saves.append(self.directory)
        if len(saves) == 2:  # epoch 2: TensorFlow's own message, half a checkpoint left behind
            half = os.path.join(self.directory, "ckpt-2_temp")
            os.makedirs(half)
            with open(os.path.join(half, "part-00000-of-00001.data-00000-of-00001.tempstate1"), "wb") as f:
                f.write(b"\0" * 100)
            raise tf.errors.ResourceExhaustedError(None, None, f"{half}/part-00000-of-00001.data-00000-of-00001"
                                                   f".tempstate1; No space left on device [Op:SaveV2]")
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", full_on_the_second_save)
    assert main(_train_argv(synthetic_dir, out)) == 2
    line = _one_line_error(capsys)
    assert f"the disk is full under {str(out)!r}" in line and "free; this run needs about" in line
    assert "it resumes" in line
    _assert_stopped_whole(out)
    assert _history_epochs(out) == [0]
    monkeypatch.setattr(tf.train.CheckpointManager, "save", real_save)  # space freed
    assert main(_train_argv(synthetic_dir, out)) == 0
    assert f"resuming the unfinished run in {out} after epoch 1" in capsys.readouterr().out
    assert _history_epochs(out) == [0, 1, 2]
    assert json.load(open(out / "run_config.json"))["status"] == "finished"


def test_training_on_a_full_tmpfs_is_one_line_and_resumes_when_it_grows(tmp_path, synthetic_dir, capsys):
    """The same on a real full filesystem: a 64 KB tmpfs (needs root; skipped where it cannot be
    mounted), grown to 8 MB for the resume."""
    import subprocess

    mnt = tmp_path / "small"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        out = mnt / "run"
        assert main(_train_argv(synthetic_dir, out)) == 2
        line = _one_line_error(capsys)
        assert f"the disk is full under {str(out)!r}" in line and "free; this run needs about" in line
        _assert_stopped_whole(out)
        subprocess.run(["mount", "-o", "remount,size=8m", str(mnt)], check=True)
        assert main(_train_argv(synthetic_dir, out)) == 0
        assert _history_epochs(out) == [0, 1, 2]
        assert json.load(open(out / "run_config.json"))["status"] == "finished"
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_partial_history_row_is_cut_before_a_resumed_run_appends(tmp_path):
    from tfxai.training.callbacks import read_history, repair_history

    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n0,0.5\n1,0.4")  # killed while writing epoch 1's row
    repair_history(str(path))
    with open(path, "a") as f:  # what CSVLogger appends on the resume
        f.write("1,0.41\n2,0.3\n")
    assert read_history(str(path)) == {"epoch": [0.0, 1.0, 2.0], "loss": [0.5, 0.41, 0.3]}


def test_a_run_killed_in_its_first_epoch_restarts_in_place(tmp_path, synthetic_dir):
    from tfxai.training import train

    with pytest.raises(KeyboardInterrupt):
        train(_tiny(synthetic_dir, tmp_path / "run"), callbacks=[_Poison.kill_in_first_epoch()])
    r = train(_tiny(synthetic_dir, tmp_path / "run"))
    assert r.output_dir == str(tmp_path / "run") and not (tmp_path / "run-2").exists()
    assert r.resumed_from_epoch == 0 and len(r.history["epoch"]) == 2


@pytest.mark.parametrize("change", [{"model_options": {"width": 16, "depth": 2}}, {"max_train_images": 50}])
def test_a_resume_that_changes_the_model_or_the_data_is_refused(tmp_path, synthetic_dir, change):
    from tfxai.errors import TfxaiError
    from tfxai.training import train

    with pytest.raises(KeyboardInterrupt):
        train(_tiny(synthetic_dir, tmp_path / "run"), callbacks=[_Poison.kill_in_first_epoch()])
    with pytest.raises(TfxaiError, match=f"different settings.*{next(iter(change))}"):
        train(_tiny(synthetic_dir, tmp_path / "run", **change))


def test_calibration_images_change_the_int8_calibration(tmp_path, trained_run, synthetic_dir):
    files = {}
    for n in (1, 100):
        out = tmp_path / f"c{n}"
        assert main(["export", "--checkpoint", trained_run.model_path, "--data-dir", synthetic_dir,
                     "--output-dir", str(out), "--quantization", "int8", "--calibration-images", str(n),
                     "--no-saved-model", "--no-onnx", "--latency-runs", "1", "--no-progress"]) == 0
        files[n] = (out / "model_int8.tflite").read_bytes()
    assert files[1] != files[100]


@pytest.mark.parametrize("env,value", [("TFXAI_MAX_PIXELS", "lots"), ("TFXAI_MAX_FILE_MB", "0")])
def test_a_bad_limit_in_the_environment_is_one_line(tmp_path, trained_run, monkeypatch, capsys, env, value):
    monkeypatch.setenv(env, value)
    image = _xrays(tmp_path, 1)[0]
    assert main(["predict", "--image", image, "--checkpoint", trained_run.model_path, "--output",
                 str(tmp_path / "o.png")]) == 2
    assert env in _one_line_error(capsys)


def test_a_folder_given_as_a_file_and_a_file_as_a_folder_are_named(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    assert main(["train", "--data-dir", str(tmp_path / "notes.txt"), "--output-dir", str(tmp_path / "o"),
                 "--no-progress"]) == 2
    assert "is a file" in _one_line_error(capsys)
    assert main(["predict", "--image", str(tmp_path / "notes.txt"), "--checkpoint", str(tmp_path)]) == 2
    assert "is a folder" in _one_line_error(capsys)
