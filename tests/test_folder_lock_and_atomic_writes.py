"""Issue 22: nothing lost when commands collide or are killed: the output-folder lock
(:class:`tfxai.io.output_folder.FolderLock`) and folders written atomically (:func:`tfxai.io.atomic.write_atomic_dir`)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tfxai.cli import main
from tfxai.errors import FolderBusyError, OutputError
from tfxai.io.atomic import remove_stale_temps, write_atomic_dir
from tfxai.io.output_folder import FolderLock, LOCK_NAME, OutputFolder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env() -> dict:
    """Subprocesses import this checkout's tfxai."""
    return {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_a_held_folder_refuses_a_second_hold_naming_the_holder(tmp_path):
    first = OutputFolder(str(tmp_path / "out"), "export").lock()
    with pytest.raises(FolderBusyError, match=rf"in use by tfxai export \(pid {os.getpid()}") as busy:
        OutputFolder(str(tmp_path / "out"), "evaluate").lock()
    assert busy.value.pid == os.getpid() and busy.value.folder == str(tmp_path / "out")
    first.release()
    assert not (tmp_path / "out" / LOCK_NAME).exists()  # released: the lock file is gone
    with OutputFolder(str(tmp_path / "out"), "evaluate").lock():
        pass


def test_a_killed_holder_releases_the_folder(tmp_path):
    # A process that dies without cleaning up (SIGKILL) leaves its lock file, but no lock.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from tfxai.io.output_folder import FolderLock; "
         f"FolderLock({str(tmp_path)!r}, 'train').acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderBusyError, match=f"tfxai train \\(pid {holder.pid}"):
            FolderLock(str(tmp_path), "evaluate").acquire()
    finally:
        holder.kill()
        holder.wait(10)
    assert (tmp_path / LOCK_NAME).exists()  # left behind by the killed process ...
    FolderLock(str(tmp_path), "evaluate").acquire().release()  # ... and no obstacle


def test_the_lock_file_is_neither_foreign_nor_removed_by_overwrite(tmp_path):
    folder = OutputFolder(str(tmp_path / "run"), "train")
    folder.path("history.csv")
    (tmp_path / "run" / "history.csv").write_text("epoch\n")
    with folder.lock():
        assert folder.unknown_entries() == []
        folder.clear()
        assert os.listdir(tmp_path / "run") == [LOCK_NAME]  # still held while clearing


@pytest.mark.parametrize("command", ["evaluate", "predict", "explain", "export", "prune"])
def test_a_command_writing_into_a_busy_folder_stops_in_one_line_naming_the_holder(
        tmp_path, trained_run, synthetic_dir, command, capsys):
    out = tmp_path / "out"
    image_dir = os.path.join(synthetic_dir, "test", "NORMAL")
    argv = {
        "evaluate": ["evaluate", "--checkpoint", trained_run.model_path, "--data-dir", synthetic_dir,
                     "--output-dir", str(out)],
        "predict": ["predict", "--image", image_dir, "--checkpoint", trained_run.model_path,
                    "--output", str(tmp_path / "p.csv"), "--overlay-dir", str(out)],
        "explain": ["explain", "--checkpoint", trained_run.model_path, "--data-dir", image_dir,
                    "--output-dir", str(out)],
        "export": ["export", "--checkpoint", trained_run.model_path, "--quantization", "float32",
                   "--output-dir", str(out)],
        "prune": ["prune", "--data-dir", synthetic_dir, "--model-type", "custom_cnn", "--output-dir", str(out)],
    }[command]
    with OutputFolder(str(out), "train").lock():
        assert main(argv + ["--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert str(out) in err and f"in use by tfxai train (pid {os.getpid()}" in err
    assert sorted(os.listdir(out)) == [".tfxai-output.json"]  # nothing written while it was held


# ----------------------------------------------------------------------------- atomic folders
def test_write_atomic_dir_leaves_nothing_under_the_final_name_when_the_writer_fails(tmp_path):
    def half(folder):
        os.makedirs(os.path.join(folder, "variables"))
        raise RuntimeError("killed while writing")

    with pytest.raises(RuntimeError):
        write_atomic_dir(str(tmp_path / "model_saved_model"), half)
    assert os.listdir(tmp_path) == []


def test_write_atomic_dir_replaces_an_earlier_folder_whole(tmp_path):
    def version(n):
        def writer(folder):
            for name in (f"only_in_{n}", "common"):
                with open(os.path.join(folder, name), "w") as f:
                    f.write(str(n))
        return writer

    target = str(tmp_path / "app")
    write_atomic_dir(target, version(1))
    write_atomic_dir(target, version(2))
    assert sorted(os.listdir(target)) == ["common", "only_in_2"]
    assert open(os.path.join(target, "common")).read() == "2"
    assert os.listdir(tmp_path) == ["app"]  # no temporary folder left
    assert os.stat(target).st_mode & 0o777 == 0o777 & ~_umask()  # the usual permissions, not mkdtemp's 0700


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_temporaries_of_killed_processes_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f".tmp-{dead.pid}-abcd").mkdir()
    (tmp_path / f".tmp-{os.getpid()}-efgh.keras").write_text("being written")
    (tmp_path / ".tmp-notapid").write_text("not ours")
    assert remove_stale_temps(str(tmp_path)) == [f".tmp-{dead.pid}-abcd"]
    assert sorted(os.listdir(tmp_path)) == [f".tmp-{os.getpid()}-efgh.keras", ".tmp-notapid"]


def _broken_saved_models(folder) -> list[str]:
    """Folders under ``folder`` (temporary ones included) holding ``variables/`` but no
    ``saved_model.pb``: a SavedModel being written."""
    found = []
    for entry in os.scandir(folder):
        if entry.is_dir() and os.path.isdir(os.path.join(entry.path, "variables")) \
                and not os.path.exists(os.path.join(entry.path, "saved_model.pb")):
            found.append(entry.name)
    return found


def test_sigkill_during_export_leaves_no_saved_model_or_a_complete_one(tmp_path, trained_run):
    """Kill ``tfxai export`` (SIGKILL) at the moment a SavedModel folder holds its variables but
    not yet its graph: under its final name there is then no SavedModel, or a complete one."""
    import tensorflow as tf

    final = tmp_path / "out" / "model_saved_model"
    for attempt in range(3):
        out = tmp_path / "out"
        proc = subprocess.Popen([sys.executable, "-m", "tfxai", "export", "--checkpoint", trained_run.model_path,
                                 "--quantization", "float32", "--no-onnx", "--output-dir", str(out),
                                 "--latency-runs", "1", "--no-progress"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
        caught = []
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if out.is_dir():
                caught = _broken_saved_models(out)
                if caught:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
            time.sleep(0.001)
        proc.wait(30)
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read()[-2000:]
        if caught:
            break
        # The export finished before the poll saw the half-written folder: start again.
        OutputFolder(str(out), "export", create=False).clear()
    assert caught, "never caught the export in the middle of writing the SavedModel"
    assert not final.exists() or tf.saved_model.load(str(final)).signatures["serving_default"] is not None
    assert not final.exists() or (final / "saved_model.pb").exists()
    # The next export into the folder removes the killed one's temporary folder and writes it whole.
    assert main(["export", "--checkpoint", trained_run.model_path, "--quantization", "float32", "--no-onnx",
                 "--output-dir", str(tmp_path / "out"), "--latency-runs", "1", "--no-progress"]) == 0
    assert (final / "saved_model.pb").exists() and not _broken_saved_models(tmp_path / "out")
    assert not [e for e in os.listdir(tmp_path / "out") if e.startswith(".tmp-")]


def test_a_full_disk_in_write_atomic_dir_is_an_output_error_naming_the_folder(tmp_path):
    import errno

    def full(folder):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match=r"disk is full while writing .*web_app.* free"):
        write_atomic_dir(str(tmp_path / "web_app"), full)
    assert os.listdir(tmp_path) == []
