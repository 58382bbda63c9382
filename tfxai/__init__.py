"""tfxai: explainable, edge-deployable chest X-ray pneumonia triage with TensorFlow/Keras 2.

The public API is re-exported here lazily, so ``import tfxai`` loads nothing heavy and
``tfxai.train(...)``, ``tfxai.load_classifier(...)`` ... import their module on first use::

    import tfxai
    result = tfxai.train(tfxai.TrainConfig("chest_xray", "custom_cnn", "runs/cnn", image_size=128))
    clf = tfxai.load_classifier(result.model_path)
    heatmaps = tfxai.make_explainer("gradcam", clf.model).explain(images)

The README's "How the code is laid out" lists the modules.
"""
from __future__ import annotations

from ._lazy import lazy_exports

__version__ = "0.2.0.dev0"

_EXPORTS = {
    "tfxai.models": ("build_model",),
    "tfxai.model_specs": ("list_models", "get_spec"),
    "tfxai.data": ("load_splits", "load_image", "decode_image", "ImageSet", "DataSplits"),
    "tfxai.training": ("TrainConfig", "TrainResult", "train"),
    "tfxai.training.folds": ("run_folds",),
    "tfxai.classifier": ("Classifier", "load_classifier", "model_facts"),
    "tfxai.ensemble": ("build_ensemble", "make_ensemble"),
    "tfxai.tta": ("tta_classifier",),
    "tfxai.evaluation": ("evaluate",),
    "tfxai.predict": ("predict_files",),
    "tfxai.metrics": ("classification_metrics",),
    "tfxai.explain": ("Explanation", "GradCAM", "make_explainer"),
    "tfxai.explain.settings": ("ExplainSettings",),
    "tfxai.explain.run": ("explain_images", "compare_models"),
    "tfxai.compress": ("prune_model", "one_shot_schedule", "iterative_schedule", "strip", "measure_sparsity",
                       "quantize_aware", "export_tflite", "convert_tflite", "run_comparison"),
    "tfxai.io.output_folder": ("OutputFolder",),
    "tfxai.io.model_files": ("save_model", "load_model"),
}
__getattr__, _names = lazy_exports(__name__, _EXPORTS)
__all__ = ["__version__", *_names]
