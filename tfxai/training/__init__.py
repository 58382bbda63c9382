"""Training (``tfxai.training``): ``train(TrainConfig) -> TrainResult`` with every artifact a user needs kept safe.

A run folder holds ``best_model.keras`` (the lowest validation loss, or the last epoch with
``select_epoch="last"``; the class names, threshold,
preprocessing and temperature stored inside), ``run_config.json`` (arguments, class names, image
size, preprocessing, threshold, versions), ``history.csv``, ``training_curves.png``,
``val_metrics.json``, the model card (``model_card.md``/``.json``, :mod:`tfxai.model_card`; the
JSON also inside the model) and TensorBoard ``logs/``. A killed run resumes from its last completed epoch
(Keras ``BackupAndRestore``) when started again with the same output folder; a finished run is
never overwritten, and ``overwrite=True`` removes only what tfxai wrote.
"""
from __future__ import annotations

from .._lazy import lazy_exports

# Re-exported lazily: the config and recipes are light (the command line reads them for --help),
# the loop loads TensorFlow.
_EXPORTS = {
    ".config": ("LR_SCHEDULES", "SELECT_EPOCHS", "STRATEGIES", "THRESHOLD_POLICIES", "TrainConfig"),
    ".callbacks": ("read_history",),
    ".loop": ("FitSettings", "TrainResult", "choose_threshold", "compile_model", "fit_arrays", "train"),
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
