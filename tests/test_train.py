import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from tfxai._keras import keras
from tfxai.errors import TfxaiError
from tfxai.training import TrainConfig, read_history, train

TINY = {"width": 8, "depth": 2}


def _config(data_dir, out, **kw):
    base = dict(model_type="custom_cnn", output_dir=str(out), epochs=3, image_size=32, batch_size=32,
                model_options=TINY, cache_dir=None, verbose=0)
    base.update(kw)
    return TrainConfig(data_dir, **base)


@pytest.mark.slow
def test_a_model_learns_the_synthetic_task(tmp_path):
    from tfxai.synthetic import write_synthetic_dataset

    root = str(tmp_path / "d")
    write_synthetic_dataset(root, {"train": 400, "val": 120}, image_size=32, seed=2)
    r = train(_config(root, tmp_path / "run", epochs=8, model_options={"width": 16, "depth": 3}))
    assert r.val_metrics["roc_auc"] > 0.9, r.val_metrics
    assert r.val_metrics["accuracy"] > 0.8, r.val_metrics


def test_run_folder_has_model_config_history_and_curves(trained_run):
    out = trained_run.output_dir
    for name in ("best_model.keras", "run_config.json", "history.csv", "training_curves.png",
                 "val_metrics.json"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    assert os.listdir(os.path.join(out, "logs"))  # TensorBoard events
    cfg = json.load(open(os.path.join(out, "run_config.json")))
    assert cfg["status"] == "finished"
    assert cfg["class_names"] == ["NORMAL", "PNEUMONIA"]
    assert cfg["image_size"] == 32 and cfg["channels"] == 1 and cfg["resize_mode"] == "squash"  # square files
    assert cfg["arguments"]["resize_mode"] == "auto"
    assert cfg["arguments"]["model_type"] == "custom_cnn" and cfg["arguments"]["seed"] == 0
    assert "tensorflow" in cfg["versions"] and "tf-keras" in cfg["versions"]
    assert 0 <= cfg["threshold"] <= 1
    hist = read_history(os.path.join(out, "history.csv"))
    for k in ("loss", "accuracy", "precision", "recall", "f1", "auc", "val_loss", "val_f1", "val_auc"):
        assert len(hist[k]) == 3, k
    assert not os.path.exists(os.path.join(out, "backup"))


def test_epoch_f1_is_computed_over_the_whole_epoch(trained_run):
    # F1 from the epoch's precision and recall: batch-averaged F1 would not satisfy this identity.
    hist = read_history(os.path.join(trained_run.output_dir, "history.csv"))
    for p, r, f1 in zip(hist["val_precision"], hist["val_recall"], hist["val_f1"]):
        expected = 2 * p * r / (p + r) if p + r else 0.0
        assert f1 == pytest.approx(expected, abs=1e-4)


def test_a_finished_run_is_never_overwritten(trained_run, synthetic_dir):
    before = os.path.getmtime(trained_run.model_path)
    r = train(_config(synthetic_dir, trained_run.output_dir, epochs=1))
    assert r.output_dir == trained_run.output_dir + "-2"
    assert os.path.getmtime(trained_run.model_path) == before


class _Kill(keras.callbacks.Callback):
    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise KeyboardInterrupt("simulated kill")


def test_a_killed_run_resumes_from_its_last_completed_epoch(tmp_path, synthetic_dir):
    cfg = _config(synthetic_dir, tmp_path / "run", epochs=4)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[_Kill(at_epoch=1)])
    assert os.path.isdir(tmp_path / "run" / "backup")
    assert json.load(open(tmp_path / "run" / "run_config.json"))["status"] == "running"
    r = train(_config(synthetic_dir, tmp_path / "run", epochs=4))
    assert r.resumed_from_epoch == 2
    assert r.output_dir == str(tmp_path / "run")
    assert read_history(os.path.join(r.output_dir, "history.csv"))["epoch"] == [0, 1, 2, 3]
    assert not os.path.exists(tmp_path / "run" / "backup")


def test_resume_with_changed_settings_is_refused(tmp_path, synthetic_dir):
    with pytest.raises(KeyboardInterrupt):
        train(_config(synthetic_dir, tmp_path / "run", epochs=3), callbacks=[_Kill(at_epoch=0)])
    with pytest.raises(TfxaiError, match="different settings.*image_size"):
        train(_config(synthetic_dir, tmp_path / "run", epochs=3, image_size=40))


def test_same_seed_gives_the_same_model(tmp_path, synthetic_dir):
    a = train(_config(synthetic_dir, tmp_path / "a", epochs=2))
    b = train(_config(synthetic_dir, tmp_path / "b", epochs=2))
    assert a.history["val_loss"] == pytest.approx(b.history["val_loss"], abs=1e-6)


def test_threshold_policy_sensitivity_is_applied_on_validation(tmp_path, synthetic_dir):
    r = train(_config(synthetic_dir, tmp_path / "t", epochs=2, threshold_policy="sensitivity",
                      target_sensitivity=0.9))
    assert r.val_metrics["sensitivity"] >= 0.9
    assert json.load(open(os.path.join(r.output_dir, "run_config.json")))["threshold"] == pytest.approx(r.threshold)


def test_bad_arguments_are_named(tmp_path, synthetic_dir):
    with pytest.raises(TfxaiError, match="model_type: 'vgg'"):
        train(_config(synthetic_dir, tmp_path / "x", model_type="vgg"))
    with pytest.raises(TfxaiError, match="pretrained: .* mobilenet_v2 only"):
        train(_config(synthetic_dir, tmp_path / "x", model_type="resnet18", pretrained=True))


@pytest.mark.slow
def test_mirrored_strategy_trains_on_two_logical_cpus(tmp_path, synthetic_dir):
    script = textwrap.dedent(f"""
        import logging, sys
        logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from tfxai.training import TrainConfig, train
        r = train(TrainConfig({synthetic_dir!r}, "custom_cnn", {str(tmp_path / 'm')!r}, epochs=1, image_size=32,
                              model_options={TINY!r}, cache_dir=None, verbose=0, strategy="mirrored",
                              deterministic=False))
        print("REPLICAS", tf.distribute.MirroredStrategy().num_replicas_in_sync, r.model_path)
    """)
    out = subprocess.run([sys.executable, "-c", "import tfxai._keras\n" + script], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "REPLICAS 2" in out.stdout
    assert "batch 64 on 2 replica(s)" in out.stdout  # the global batch doubles
    assert os.path.exists(tmp_path / "m" / "best_model.keras")


@pytest.mark.parametrize("field,value", [
    ("balanced_validation", "yes"), ("lr_schedule", "step"), ("ema_decay", 1.0), ("ema_decay", -0.1),
    ("ema_decay", float("nan")), ("augment_config", {"fog": 1.0}), ("augment_config", {"noise": -2.0}),
    ("augment_config", {"hflip": 1}), ("select_epoch", "best"),
])
def test_out_of_range_schedule_ema_and_augment_settings_are_named(field, value):
    from tfxai.errors import ConfigError

    with pytest.raises(ConfigError, match=f"^{field}: .*") as err:
        TrainConfig("d", **{field: value})
    assert err.value.field == field
    shown = next(iter(value)) if isinstance(value, dict) else repr(value)
    assert shown in str(err.value)


def test_a_run_saved_before_the_new_settings_existed_still_resumes():
    from dataclasses import asdict

    from tfxai.training.run_folder import resume_conflicts

    now = asdict(_config("d", "out"))
    old = {k: v for k, v in now.items() if k not in ("balanced_validation", "lr_schedule", "ema_decay")}
    assert resume_conflicts(old, now) == {}  # missing then = the default now
    changed = asdict(_config("d", "out", lr_schedule="cosine", ema_decay=0.99, balanced_validation=True))
    assert set(resume_conflicts(old, changed)) == {"balanced_validation", "ema_decay", "lr_schedule"}
    assert set(resume_conflicts(now, changed)) == {"balanced_validation", "ema_decay", "lr_schedule"}


def test_balanced_validation_weighs_both_classes_the_same_in_the_validation_loss():
    import numpy as np

    from tfxai.data import ImageSet
    from tfxai.training.loop import _datasets

    labels = np.array([0] * 6 + [1] * 18)
    images = np.zeros((24, 16, 16, 1), np.uint8)
    part = ImageSet(images, labels, [f"{i}.png" for i in range(24)], ["NORMAL", "PNEUMONIA"])
    for balanced, expected in ((False, None), (True, 12.0)):
        _, val_ds, _ = _datasets(_config("d", "out", balanced_validation=balanced), part, part, 2, 8)
        batches = list(val_ds)
        if expected is None:
            assert len(batches[0]) == 2  # images, targets: no weights
            continue
        w = np.concatenate([b[2].numpy() for b in batches])
        y = np.concatenate([b[1].numpy()[:, 0] for b in batches])
        assert w[y == 0].sum() == pytest.approx(expected) and w[y == 1].sum() == pytest.approx(expected)


def test_select_epoch_last_keeps_the_last_epoch_where_val_loss_keeps_the_lowest(tmp_path):
    import json

    from tfxai.training.callbacks import BestCheckpoint

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    losses = [0.5, 0.3, 0.4, 0.45]  # the lowest at epoch 2
    for keep_last, expected in ((False, 2), (True, 4)):
        state = tmp_path / f"state_{keep_last}.json"
        cb = BestCheckpoint(str(tmp_path / f"m_{keep_last}.keras"), str(state), {}, keep_last=keep_last)
        cb.set_model(model)
        for epoch, loss in enumerate(losses):
            cb.on_epoch_end(epoch, {"val_loss": loss, "loss": 1.0})
        assert json.loads(state.read_text())["best_epoch"] == expected
    # A diverged epoch is never kept, even as the last one.
    cb.on_epoch_end(4, {"val_loss": float("nan"), "loss": 1.0})
    assert json.loads(state.read_text())["best_epoch"] == 4


def _history_rows(run_dir) -> list[int]:
    """The epoch column of history.csv as written, every row (read_history keeps the last per epoch)."""
    import csv

    with open(os.path.join(run_dir, "history.csv"), newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_two_trainings_started_into_one_folder_never_interleave(tmp_path, synthetic_dir):
    """Issue 22: a run started while another trains into the same --output-dir gets a folder of
    its own (naming the other process), so neither history.csv nor the model is mixed."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out, go = tmp_path / "runs" / "x", tmp_path / "go"
    # The first run pauses after its first epoch until the second has finished: a real overlap.
    first = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, time
        from tfxai._keras import keras
        from tfxai.training import TrainConfig, train

        class Pause(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                deadline = time.monotonic() + 120
                while epoch == 0 and not os.path.exists({str(go)!r}) and time.monotonic() < deadline:
                    time.sleep(0.05)

        train(TrainConfig({synthetic_dir!r}, "custom_cnn", {str(out)!r}, epochs=2, image_size=32, batch_size=32,
                          model_options={TINY!r}, augment_config={{"hflip": False}}, max_train_images=64,
                          cache_dir=None, verbose=0),
              callbacks=[Pause()])  # the settings the command below gives
    """)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "history.csv").exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (out / "history.csv").exists(), first.communicate()[0][-2000:]
        second = subprocess.run([sys.executable, "-m", "tfxai", "train", "--data-dir", synthetic_dir,
                                 "--output-dir", str(out), "--model-type", "custom_cnn", "--epochs", "2",
                                 "--image-size", "32", "--model-options", json.dumps(TINY), "--max-train-images", "64",
                                 "--cache-dir", "none", "--no-progress"], env=env, capture_output=True, text=True,
                                timeout=300)
    finally:
        go.touch()
        log = first.communicate(timeout=300)[0]
    assert first.returncode == 0, log[-2000:]
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"in use by tfxai train (pid {first.pid}" in second.stderr
    assert f"writing this run to {out}-2" in second.stderr
    assert _history_rows(out) == [0, 1]
    assert _history_rows(f"{out}-2") == [0, 1]
    for run in (out, f"{out}-2"):
        assert json.load(open(os.path.join(run, "run_config.json")))["status"] == "finished"
        assert not os.path.exists(os.path.join(run, ".tfxai-lock"))


# ----------------------------------------------------------------------------- several machines
def _workers(tmp_path, synthetic_dir, epochs: int) -> list[subprocess.Popen]:
    """Two `tfxai train --strategy multiworker` processes forming a cluster on loopback ports,
    each with its own TF_CONFIG index and run folder (w0, w1)."""
    import socket

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sockets = [socket.socket() for _ in range(2)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    cluster = {"worker": [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]}
    for s in sockets:
        s.close()
    procs = []
    for index in range(2):
        env = {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tfxai", "train", "--strategy", "multiworker", "--data-dir", synthetic_dir,
             "--output-dir", str(tmp_path / f"w{index}"), "--model-type", "custom_cnn", "--epochs", str(epochs),
             "--patience", str(epochs), "--image-size", "32", "--model-options", '{"width": 4, "depth": 1}',
             "--max-train-images", "64", "--cache-dir", "none", "--no-progress"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def _stop(procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.communicate()


def test_two_multiworker_processes_on_loopback_end_with_the_same_weights(tmp_path, synthetic_dir):
    import numpy as np

    from tfxai.io.model_files import load_model

    procs = _workers(tmp_path, synthetic_dir, epochs=2)
    try:
        outs = [p.communicate(timeout=180) for p in procs]
    finally:
        _stop(procs)
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        assert "on 2 replica(s)" in out  # one replica per worker: a real two-process cluster
    w0, w1 = (load_model(str(tmp_path / f"w{i}" / "best_model.keras")).get_weights() for i in range(2))
    assert len(w0) == len(w1) > 0
    for a, b in zip(w0, w1):
        np.testing.assert_allclose(a, b, atol=1e-6)
    h0, h1 = (read_history(str(tmp_path / f"w{i}" / "history.csv")) for i in range(2))
    assert h0["loss"] == pytest.approx(h1["loss"], abs=1e-6) and len(h0["loss"]) == 2


def test_a_killed_worker_stops_the_other_in_one_line_instead_of_a_hang(tmp_path, synthetic_dir):
    procs = _workers(tmp_path, synthetic_dir, epochs=500)
    try:
        history = tmp_path / "w0" / "history.csv"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and procs[0].poll() is None and not (
                history.exists() and len(history.read_text().splitlines()) >= 2):
            time.sleep(0.2)
        assert procs[0].poll() is None, procs[0].communicate()[1][-2000:]
        procs[1].kill()  # worker 1 dies mid-run
        killed = time.monotonic()
        _, err = procs[0].communicate(timeout=90)  # bounded: a hang fails here
        waited = time.monotonic() - killed
    finally:
        _stop(procs)
    assert procs[0].returncode == 2, err[-2000:]
    errors = [line for line in err.splitlines() if line.startswith("tfxai train: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err[-2000:]
    assert "multi-worker training stopped" in errors[0] and "stopped answering" in errors[0]
    assert f"resumes in {str(tmp_path / 'w0')!r}" in errors[0]
    assert waited < 60, f"the surviving worker took {waited:.0f} s to stop"
