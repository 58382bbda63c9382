"""Grad-CAM++, Score-CAM, Faster-ScoreCAM and SmoothGrad through tf-keras-vis 0.8.7.

Three things make tf-keras-vis work with tf_keras models on TF 2.21, handled here once:

* It looks for the conv layer by Keras 3 classes and cannot reach a layer inside a nested
  backbone. We hand it an identity layer whose output is the feature map wired to the model
  inputs (:meth:`tfxai.explain.gradcam.CamGraph.vis_model`), with
  ``seek_penultimate_conv_layer=False``. The forward pass inside is one compiled function, so
  tf-keras-vis' eager gradients run in graph mode (eager backprop through ResNet-18 aborts the
  process on TF 2.21 with oneDNN).
* Its ``model_modifier`` (``ReplaceToLinear``) clones the model, which breaks that wiring and
  copies the weights. We pass no modifier: the logits come from the cam graph instead, a (N, K)
  tensor whose softmax is the model's probabilities (Score-CAM applies that softmax itself).
* SmoothGrad draws its noise from NumPy's global generator; we seed it for the call and restore
  the previous global state afterwards, so results are reproducible without a global seed.

``tfxai._keras`` is imported before tf_keras_vis so that ``tf.keras`` is tf_keras there too.
"""
from __future__ import annotations

import contextlib
import functools
import logging

import numpy as np

from .._keras import keras, tf
from ..checks import check_choice, check_number
from .gradcam import build_cam_graph
from .types import HeatmapExplainer, normalize_heatmap

log = logging.getLogger(__name__)

VIS_METHODS = ("gradcam++", "scorecam", "faster-scorecam", "smoothgrad")


@contextlib.contextmanager
def _numpy_global_seed(seed: int):
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


class CamVisExplainer(HeatmapExplainer):
    """tf-keras-vis methods behind tfxai's call shape.

    method: "gradcam++", "scorecam" (one forward pass per feature channel), "faster-scorecam"
    (only the ``max_n`` channels with the largest activation variance) or "smoothgrad"
    (``smooth_samples`` noisy copies, noise ``smooth_noise`` x the image's value range).
    ``explain(images, targets=None)`` -> list of :class:`Explanation`, heatmaps float32 (H, W)
    in [0, 1]; ``heatmaps(images, targets)`` -> (N, H, W), probabilities (N, K), targets (N,).
    """

    def __init__(self, model: keras.Model, method: str = "gradcam++", layer: str | None = None,
                 seed: int = 0, batch_size: int = 32, max_n: int = 10, smooth_samples: int = 20,
                 smooth_noise: float = 0.2):
        super().__init__(batch_size)
        check_choice("method", method, VIS_METHODS)
        check_number("max_n", max_n, 1, whole=True)
        check_number("smooth_samples", smooth_samples, 1, whole=True)
        check_number("smooth_noise", smooth_noise, 0, 1, low_open=True, high_open=True)
        self.model = model
        self.method = method
        self.seed = int(seed)
        self.max_n = int(max_n)
        self.smooth_samples = int(smooth_samples)
        self.smooth_noise = float(smooth_noise)
        self.graph = build_cam_graph(model, layer)
        self.layer_path = self.graph.layer_path
        self.input_shape = tuple(model.input_shape[1:])
        self.num_classes = self.graph.num_classes
        self._logits_model, self._feature_layer = self.graph.vis_model()
        spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
        self._logits_fn = tf.function(lambda x: self._logits_model(x, training=False), autograph=False,
                                      input_signature=[spec])
        self._vis = self._make_visualizer()

    def _make_visualizer(self):
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
        from tf_keras_vis.saliency import Saliency
        from tf_keras_vis.scorecam import Scorecam

        cls = {"gradcam++": GradcamPlusPlus, "scorecam": Scorecam, "faster-scorecam": Scorecam,
               "smoothgrad": Saliency}[self.method]
        vis = cls(self._logits_model, model_modifier=None, clone=False)
        # Score-CAM calls model.predict(...) with Keras' progress bar; this model is ours alone.
        vis.model.predict = functools.partial(vis.model.predict, verbose=0)
        return vis

    @property
    def params(self) -> dict:
        p = {"layer": "/".join(self.layer_path)}
        if self.method == "faster-scorecam":
            p["max_n"] = self.max_n
        if self.method == "smoothgrad":
            p.update(smooth_samples=self.smooth_samples, smooth_noise=self.smooth_noise,
                     seed=self.seed)
        return p

    def _run(self, x: np.ndarray, targets: np.ndarray) -> np.ndarray:
        t = tf.constant(targets)

        def score(output):
            return tf.gather(output, t[:tf.shape(output)[0]], axis=1, batch_dims=1)

        common = dict(penultimate_layer=self._feature_layer,
                      seek_penultimate_conv_layer=False)
        if self.method == "gradcam++":
            return self._vis(score, x, **common)
        if self.method in ("scorecam", "faster-scorecam"):
            channels = int(self.graph.features.shape[-1])
            max_n = None if self.method == "scorecam" else min(self.max_n, channels)
            return self._vis(score, x, batch_size=self.batch_size, max_N=max_n, **common)
        with _numpy_global_seed(self.seed):
            return self._vis(score, tf.constant(x), smooth_samples=self.smooth_samples,
                             smooth_noise=self.smooth_noise)

    def _heatmaps(self, x: np.ndarray, t: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        logits = np.concatenate([self._logits_fn(tf.constant(x[i:i + self.batch_size])).numpy()
                                 for i in range(0, len(x), self.batch_size)])
        probs = tf.nn.softmax(logits, axis=-1).numpy().astype(np.float32)
        if t is None:
            t = probs.argmax(axis=1).astype(np.int64)
        # Score-CAM multiplies the batch by the number of channels: keep its batches bounded.
        step = self.batch_size if self.method not in ("scorecam", "faster-scorecam") else 1
        maps = [np.asarray(self._run(x[i:i + step], t[i:i + step]), np.float32).reshape(
            -1, *x.shape[1:3]) for i in range(0, len(x), step)]
        return normalize_heatmap(np.concatenate(maps)), probs, t
