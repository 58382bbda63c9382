"""What a training run says when ``model.fit`` stops on an error tfxai can explain: a full disk
(after removing what the failed save left half-written, so the run stays resumable) or a lost
worker of a multi-worker cluster. One line each, saying how to go on."""
from __future__ import annotations

import json
import os
import re

import numpy as np

from .._keras import tf
from ..errors import OutputError, TfxaiError
from ..io.atomic import format_bytes, free_bytes, is_disk_full
from .callbacks import drop_unfinished_checkpoints, repair_history
from .run_folder import BACKUP_DIR


def fit_failure(err: BaseException, out: str, model, strategy) -> TfxaiError | None:
    """The one-line error for ``err``, raised by ``model.fit`` in the run folder ``out`` under
    ``strategy``; None when it is not one of those (the caller re-raises it as it is)."""
    if is_disk_full(err):
        return _disk_full(out, model)
    if _worker_lost(err, strategy):
        return TfxaiError(_worker_lost_message(err, out))
    return None


def _space_needed(model) -> int:
    """Bytes a run folder needs on disk, about: the backup checkpoint and best_model.keras each
    hold the weights and the optimizer's state, and each is written beside its previous copy
    before that is removed; 1 MB for history, curves and TensorBoard logs."""
    variables = list(model.variables) + list(getattr(model.optimizer, "variables", lambda: [])())
    state = sum(int(np.prod(v.shape)) * v.dtype.size for v in variables)
    return 4 * state + 2 ** 20


def _disk_full(out: str, model) -> OutputError:
    """The one-line error for a full disk during training, after removing what the failed save
    left half-written (the run stays resumable)."""
    drop_unfinished_checkpoints(os.path.join(out, BACKUP_DIR))
    repair_history(os.path.join(out, "history.csv"))
    return OutputError(
        f"the disk is full under {out!r} ({format_bytes(free_bytes(out))} free; this run needs about "
        f"{format_bytes(_space_needed(model))} for its checkpoints and logs); free some space and run the same "
        f"command again: it resumes after the last completed epoch")


# What a collective op raises on the workers left when one of them dies (TensorFlow's own
# health check aborts them with UnavailableError; a restarted peer gives FailedPrecondition).
_CLUSTER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.FailedPreconditionError,
                   tf.errors.AbortedError, tf.errors.CancelledError)


def _worker_lost(err: BaseException, strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and isinstance(err, _CLUSTER_ERRORS)


def _lost_worker(text: str) -> str | None:
    """The worker TensorFlow's error message names as gone: its TF_CONFIG address when known."""
    task = re.search(r"(?:unhealthy[^\n]*\n|alive failed, )/job:(\w+)/replica:\d+/task:(\d+)", text)
    if task:
        job, index = task.group(1), int(task.group(2))
        try:
            return json.loads(os.environ.get("TF_CONFIG", "{}"))["cluster"][job][index]
        except (ValueError, KeyError, IndexError, TypeError):
            return f"{job} {index}"
    address = re.search(r"ipv[46]:(\S+?):\s", text)
    return address.group(1) if address else None


def _worker_lost_message(err: BaseException, out: str) -> str:
    """One line for a multi-worker run whose peer died: which worker (from TensorFlow's message,
    when it says) and how to go on."""
    text = getattr(err, "message", str(err))
    who = _lost_worker(text)
    cause = re.search(r"(stopped sending heartbeats|Connection refused|is down|Deadline Exceeded|Socket closed)",
                      text, re.I)
    return (f"multi-worker training stopped: {f'worker {who}' if who else 'another worker'} of the cluster "
            f"(TF_CONFIG) stopped answering ({cause.group(1) if cause else type(err).__name__}); start every "
            f"worker again with the same command: this one resumes in {out!r} after its last completed epoch")
