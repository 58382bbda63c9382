"""Making a model small for a phone, measured at every step.

- :mod:`.prune`: magnitude pruning with tfmot (one-shot, iterative, random baseline), the layer
  policy, stripping, measured sparsity.
- :mod:`.qat`: (sparsity-preserving) quantization-aware training.
- :mod:`.tflite`: TFLite conversion (float32 / dynamic / float16 / int8), sidecars, SavedModel, ONNX.
- :mod:`.measure`: sizes, accuracy and agreement with Keras, latency under LiteRT.
- :mod:`.experiment`: the one-shot vs iterative vs random comparison (``tfxai prune``); its tables
  and figure in :mod:`.comparison_report`.

The names below are re-exported lazily (importing this package loads no TensorFlow).
"""
from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    ".prune": ("LayerPolicy", "MODES", "copy_model", "iterative_schedule", "measure_sparsity", "one_shot_schedule",
              "prune_model", "pruning_callbacks", "random_prune", "strip"),
    ".qat": ("quantize_aware", "plain_weights"),
    ".tflite": ("QUANTIZATIONS", "Calibration", "convert_tflite", "export_and_measure", "export_measured",
               "export_onnx", "export_saved_model", "export_tflite", "parse_quantizations"),
    ".measure": ("EvalSet", "evaluate_classifier", "export_table", "file_sizes", "gzip_size", "keras_latency_ms",
                "median_latency_ms"),
    ".experiment": ("ExperimentConfig", "prepare_cifar10", "run_comparison"),
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
