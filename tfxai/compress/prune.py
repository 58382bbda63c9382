"""Magnitude pruning with tensorflow-model-optimization: schedules, one-shot vs iterative, measured.

Functions do the transforms (``prune_model``, ``random_prune``, ``strip``, ``measure_sparsity``);
:class:`LayerPolicy`, a tfmot ``PruningPolicy``, holds the rule that decides which layers are pruned.

Which layers are pruned (the policy, also printed with every result):

* ``Conv2D`` and ``Dense`` kernels only. tfmot wraps ``DepthwiseConv2D`` and ``BatchNormalization``
  but never zeroes their weights (its registry lists no prunable weights for them), so they are
  not wrapped at all here, and measured sparsity counts them as dense. Biases are never pruned.
* Not the first convolution: it sees the raw image, has few weights (3x3xCx32 = 864 for RGB
  MobileNetV2) and pruning it costs accuracy out of proportion to the bytes saved.
* Not layers with fewer than ``min_params`` kernel weights (default 1024): they hold little of
  the model's size, and a 50-90% cut leaves them almost empty.
* With 2:4 structured sparsity, only layers whose kernel groups into runs of four (input size a
  multiple of 4) are wrapped; tfmot refuses the others.

Schedules, with tfmot's step counter (the first training batch is step 1):

* one-shot: ``ConstantSparsity(target, begin_step=0, end_step=1, frequency=1)``: the mask is set to
  the target once, at the first batch, and kept while the remaining steps fine-tune.
* iterative: ``PolynomialDecay(0 -> target, begin_step=0, end_step=ramp)`` with a mask update every
  ``frequency`` steps; after ``ramp`` (a fraction of the budget) the mask is fixed and the rest of
  the budget fine-tunes. Both modes therefore train for exactly the same number of steps.
* random (baseline): the same layers are cut to the same sparsity by a random mask (seeded), which
  then stays fixed during the same fine-tuning budget.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

from .._keras import keras, tf
from ..tables import Column, format_table

log = logging.getLogger(__name__)

MODES = ("one_shot", "iterative", "random")
KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel")


def _tfmot_sparsity():
    return tfmot.sparsity.keras


def _check_sparsity(target_sparsity: float) -> float:
    if not isinstance(target_sparsity, (int, float)) or not 0.0 <= float(target_sparsity) < 1.0:
        raise ValueError(f"target_sparsity must be in [0, 1), got {target_sparsity!r}")
    return float(target_sparsity)


# ----------------------------------------------------------------------------- schedules
def one_shot_schedule(target_sparsity: float, begin_step: int = 0):
    """tfmot ``ConstantSparsity``: prune to ``target_sparsity`` once, at the first batch after
    ``begin_step`` (tfmot counts the first batch as step 1), then keep the mask fixed."""
    target = _check_sparsity(target_sparsity)
    if begin_step < 0:
        raise ValueError(f"begin_step must be >= 0, got {begin_step!r}")
    return _tfmot_sparsity().ConstantSparsity(target, begin_step=int(begin_step),
                                              end_step=int(begin_step) + 1, frequency=1)


def iterative_schedule(target_sparsity: float, total_steps: int, ramp_fraction: float = 0.5,
                       frequency: int = 10, initial_sparsity: float = 0.0, power: int = 3):
    """tfmot ``PolynomialDecay`` from ``initial_sparsity`` to ``target_sparsity`` over the first
    ``ramp_fraction`` of ``total_steps`` (rounded up to a multiple of ``frequency`` and at most
    ``total_steps``), with a mask update every ``frequency`` steps; the rest fine-tunes.

    Sparsity at step s <= end: ``target + (initial - target) * (1 - s / end) ** power``.
    """
    target = _check_sparsity(target_sparsity)
    initial = _check_sparsity(initial_sparsity)
    if initial > target:
        raise ValueError(f"initial_sparsity {initial!r} is above target_sparsity {target!r}")
    if int(total_steps) < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps!r}")
    if not 0.0 < ramp_fraction <= 1.0:
        raise ValueError(f"ramp_fraction must be in (0, 1], got {ramp_fraction!r}")
    frequency = max(1, min(int(frequency), int(total_steps)))
    end = frequency * max(1, math.ceil(ramp_fraction * total_steps / frequency))
    while end > total_steps and end > frequency:  # the target must be reached inside the budget
        end -= frequency
    return _tfmot_sparsity().PolynomialDecay(initial, target, begin_step=0, end_step=int(end),
                                             power=power, frequency=frequency)


def schedule_sparsity(schedule, step: int) -> tuple[bool, float]:
    """What a tfmot schedule does at ``step``: (mask is updated at this step, its sparsity)."""
    update, sparsity = schedule(tf.constant(int(step), tf.int64))
    return bool(update.numpy()), float(sparsity.numpy())


# ----------------------------------------------------------------------------- policy
@dataclass
class LayerPolicy(tfmot.sparsity.keras.PruningPolicy):
    """Which layers get pruned (see the module docstring): a tfmot ``PruningPolicy`` passed to
    ``prune_low_magnitude(model, pruning_policy=...)``.

    min_params: layers with fewer kernel weights stay dense. skip_first_conv: the first Conv2D
    stays dense. exclude: layer names that stay dense. m_by_n: (2, 4) for structured sparsity.
    xnnpack_latency: tfmot's ``PruneForLatencyOnXNNPack`` on top: only 1x1 Conv2D layers, the
    ones XNNPack runs sparse (:mod:`tfxai.compress.sparse`), in a model it can run sparse.
    """

    min_params: int = 1024
    skip_first_conv: bool = True
    exclude: tuple[str, ...] = ()
    m_by_n: tuple[int, int] | None = None
    xnnpack_latency: bool = False
    _first_conv: str | None = field(default=None, repr=False, compare=False)

    def reason_not_pruned(self, layer, first_conv: str | None) -> str | None:
        """None when ``layer`` is pruned, else a short reason (goes into the per-layer report)."""
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            return "depthwise conv (tfmot does not prune it)"
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            return "no prunable kernel"
        if self.xnnpack_latency and not tfmot.sparsity.keras.PruneForLatencyOnXNNPack().allow_pruning(layer):
            return "not a 1x1 conv (latency policy: XNNPack runs only 1x1 convs sparse)"
        if layer.name in self.exclude:
            return "excluded by name"
        if self.skip_first_conv and layer.name == first_conv:
            return "first conv (sees the raw image)"
        size = int(np.prod(layer.kernel.shape))
        if size < self.min_params:
            return f"small ({size} < {self.min_params} weights)"
        if self.m_by_n and (size // int(layer.kernel.shape[-1])) % self.m_by_n[1]:
            return f"kernel does not group into runs of {self.m_by_n[1]}"
        return None

    # tfmot's PruningPolicy interface: the model is seen first, then each layer.
    def ensure_model_supports_pruning(self, model) -> None:
        if self.xnnpack_latency:
            try:  # tfmot's own check of what XNNPack can run sparse
                tfmot.sparsity.keras.PruneForLatencyOnXNNPack().ensure_model_supports_pruning(model)
            except ValueError as err:
                raise ValueError(f"the latency policy (tfmot PruneForLatencyOnXNNPack) refuses {model.name!r}: "
                                 f"{str(err).splitlines()[0]}; build MobileNetV2 with padding='symmetric'") from None
        self._first_conv = first_conv_name(model)
        if not any(self.reason_not_pruned(layer, self._first_conv) is None for layer in model.layers):
            raise ValueError(f"no layer of {model.name!r} qualifies for pruning under {self}")

    def allow_pruning(self, layer) -> bool:
        return self.reason_not_pruned(layer, self._first_conv) is None

    def to_dict(self) -> dict:
        return {"min_params": self.min_params, "skip_first_conv": self.skip_first_conv,
                "exclude": list(self.exclude), "m_by_n": list(self.m_by_n) if self.m_by_n else None,
                "xnnpack_latency": self.xnnpack_latency,
                "pruned_layer_types": ["Conv2D 1x1"] if self.xnnpack_latency else ["Conv2D", "Dense"],
                "never_pruned": ["DepthwiseConv2D", "BatchNormalization", "biases"]}


def first_conv_name(model: keras.Model) -> str | None:
    """Name of the first ``Conv2D`` (not depthwise) in the model's layer order, or None."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.DepthwiseConv2D):
            return layer.name
    return None


def prunable_layer_names(model: keras.Model, policy: LayerPolicy | None = None) -> list[str]:
    """Names of the layers that ``policy`` prunes, in model order."""
    policy = policy or LayerPolicy()
    first = first_conv_name(model)
    return [layer.name for layer in model.layers if policy.reason_not_pruned(layer, first) is None]


# ----------------------------------------------------------------------------- transforms
def copy_model(model: keras.Model) -> keras.Model:
    """A fresh copy with its own weights: tfmot's clone shares the layers it does not wrap, so
    pruning a copy keeps the caller's model untouched."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def prune_model(model: keras.Model, schedule, policy: LayerPolicy | None = None) -> keras.Model:
    """tfmot's ``prune_low_magnitude(schedule, pruning_policy=policy)`` on a copy of ``model``:
    the layers ``policy`` allows get wrapped; the input model is not modified.

    Train the result with :func:`pruning_callbacks` (which includes ``UpdatePruningStep``), then
    :func:`strip` it. Raises ValueError when the policy leaves nothing to prune.
    """
    policy = policy or LayerPolicy()
    pruned = _tfmot_sparsity().prune_low_magnitude(copy_model(model), pruning_schedule=schedule,
                                                    pruning_policy=policy, sparsity_m_by_n=policy.m_by_n)
    log.info("pruning %d of %d layers of %s", len(_wrappers(pruned)), len(model.layers), model.name)
    return pruned


def random_prune(model: keras.Model, target_sparsity: float, seed: int,
                 policy: LayerPolicy | None = None) -> keras.Model:
    """The random baseline: the layers ``policy`` prunes get a random mask at ``target_sparsity``
    (exactly ``round(target * size)`` zeros per layer, drawn with ``seed``), applied at once and
    kept fixed during training (the tfmot schedule never updates it). Train with
    :func:`pruning_callbacks` like any pruned model."""
    target = _check_sparsity(target_sparsity)
    never = _tfmot_sparsity().ConstantSparsity(target, begin_step=2**62, frequency=1)
    pruned = prune_model(model, never, policy)
    rng = np.random.default_rng(seed)
    for layer in _wrappers(pruned):
        layer.pruning_step.assign(0)
        for weight, mask, _threshold in layer.pruning_vars:
            size = int(np.prod(weight.shape))
            flat = np.ones(size, np.float32)
            flat[rng.choice(size, int(round(target * size)), replace=False)] = 0.0
            m = flat.reshape(weight.shape)
            mask.assign(m.astype(mask.dtype.as_numpy_dtype))
            weight.assign(weight.numpy() * m)
    return pruned


def _wrappers(model: keras.Model) -> list:
    return [layer for layer in model.layers if isinstance(layer, pruning_wrapper.PruneLowMagnitude)]


def is_pruning_wrapped(model: keras.Model) -> bool:
    return bool(_wrappers(model))


def pruning_callbacks(log_dir: str | None = None) -> list:
    """``UpdatePruningStep`` (required by tfmot) and, with ``log_dir``, ``PruningSummaries``
    (TensorBoard scalars of per-layer sparsity and threshold, in ``log_dir/metrics``)."""
    sp = _tfmot_sparsity()
    callbacks = [sp.UpdatePruningStep()]
    if log_dir:
        callbacks.append(sp.PruningSummaries(log_dir=str(log_dir)))
    return callbacks


def strip(model: keras.Model) -> keras.Model:
    """tfmot's ``strip_pruning`` after re-applying every mask: a plain Keras model (same layer
    names and architecture as before pruning) whose pruned weights are exact zeros."""
    for layer in _wrappers(model):
        for weight, mask, _threshold in layer.pruning_vars:
            weight.assign(weight * tf.cast(mask, weight.dtype))
    stripped = _tfmot_sparsity().strip_pruning(model)
    return copy_model(stripped)  # detached from the wrapped model's variables


# ----------------------------------------------------------------------------- measuring
@dataclass(frozen=True)
class LayerSparsity:
    """Measured zeros of one layer's kernel: ``sparsity = zeros / params``."""

    name: str
    kind: str
    params: int
    zeros: int
    pruned: bool
    note: str = ""

    @property
    def sparsity(self) -> float:
        return self.zeros / self.params if self.params else 0.0

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "params": self.params, "zeros": self.zeros,
                "sparsity": self.sparsity, "pruned": self.pruned, "note": self.note}


@dataclass(frozen=True)
class SparsityReport:
    """Measured sparsity of a model (exact zeros, not the schedule's promise).

    overall: zeros / all parameters (kernels, biases, BatchNorm, depthwise); kernels: over every
    conv/dense kernel; pruned_layers: over the kernels the policy prunes.
    """

    layers: tuple[LayerSparsity, ...]
    total_params: int
    total_zeros: int

    @property
    def overall(self) -> float:
        return self.total_zeros / self.total_params if self.total_params else 0.0

    @property
    def nonzero_params(self) -> int:
        return self.total_params - self.total_zeros

    def _ratio(self, layers) -> float:
        params = sum(ls.params for ls in layers)
        return sum(ls.zeros for ls in layers) / params if params else 0.0

    @property
    def kernels(self) -> float:
        return self._ratio(self.layers)

    @property
    def pruned_layers(self) -> float:
        return self._ratio([ls for ls in self.layers if ls.pruned])

    def to_dict(self) -> dict:
        return {"overall": self.overall, "kernels": self.kernels, "pruned_layers": self.pruned_layers,
                "total_params": self.total_params, "nonzero_params": self.nonzero_params,
                "layers": [ls.to_dict() for ls in self.layers]}

    def table(self) -> str:
        rows = [{"layer": ls.name, "type": ls.kind, "weights": ls.params, "sparsity": ls.sparsity,
                 "note": "pruned" if ls.pruned else ls.note} for ls in self.layers]
        columns = (Column("layer", "layer"), Column("type", "type"), Column("weights", "weights", "{:d}"),
                   Column("sparsity", "sparsity", "{:.3f}"), Column("note", "note"))
        return (format_table(rows, columns) + f"\noverall {self.overall:.4f} of {self.total_params} parameters; "
                f"kernels {self.kernels:.4f}; pruned layers {self.pruned_layers:.4f}")


def measure_sparsity(model: keras.Model, policy: LayerPolicy | None = None) -> SparsityReport:
    """Count exact zeros in a model (plain or pruning-wrapped) per kernel and overall.

    ``pruned`` marks the layers that ``policy`` prunes (for a wrapped model: the wrapped layers).
    Pruning bookkeeping variables (masks, thresholds, step counters) are not parameters.
    """
    policy = policy or LayerPolicy()
    wrapped = {layer.layer.name for layer in _wrappers(model)}
    plain = _tfmot_sparsity().strip_pruning(model) if wrapped else model
    first = first_conv_name(plain)
    rows, total, zeros = [], 0, 0
    for layer in plain.layers:
        for w in layer.weights:
            v = w.numpy()
            total += v.size
            zeros += int(np.count_nonzero(v == 0))
        kernel = next((w for w in layer.weights
                       if w.name.split("/")[-1].split(":")[0] in KERNEL_NAMES), None)
        if kernel is None:
            continue
        reason = policy.reason_not_pruned(layer, first)
        pruned = layer.name in wrapped if wrapped else reason is None
        v = kernel.numpy()
        rows.append(LayerSparsity(layer.name, type(layer).__name__, int(v.size),
                                  int(np.count_nonzero(v == 0)), pruned,
                                  "" if pruned else (reason or "not wrapped")))
    return SparsityReport(tuple(rows), int(total), int(zeros))
