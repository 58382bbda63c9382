"""A training run that fails stops whole and resumes: a diverging run saves no NaN model, a full
disk is one line and the same command resumes, a partial history row is cut, a kill in the first
epoch restarts in place, a resume with other settings is refused (issues 13 and 22)."""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from cli_helpers import one_line_error
from tfxai.cli import main
from tfxai.errors import OutputError


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
    line = one_line_error(capsys)
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
        line = one_line_error(capsys)
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
