"""``tfxai prune``: the one-shot vs iterative (vs random) pruning comparison, measured.

Examples::

    tfxai prune --dataset cifar10 --output-dir runs/prune_cifar10
    tfxai prune --data-dir chest_xray --model-type mobilenet_v2 --modes one_shot,iterative \\
        --sparsities 0.5,0.8 --epochs 6 --image-size 64 --output-dir runs/prune_xray
    tfxai prune --data-dir chest_xray --checkpoint runs/train/best_model.keras --output-dir runs/p

Without ``--full`` a small configuration runs: on CIFAR-10 MobileNetV2 alpha 0.5 at 64 px on
10,000 training images, 6 dense epochs then 1 epoch per pruned run (no dense_ft row); on a
folder alpha 0.35 at 64 px on up to 6,000 images, 6 + 3 epochs (README: measured times).
``--full`` uses every image, alpha 1.0, 96 px for folders, augmentation, 10 + 2 epochs and one
epoch of sparsity-preserving quantization-aware training per magnitude-pruned model. Flags given explicitly override either
preset; ``--modes one_shot,iterative`` drops the random baseline and a third of the time.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import replace
from typing import TYPE_CHECKING

from ..compress.comparison_report import comparison_table
from ..data import load_splits
from ..errors import DataError, TfxaiError
from ..io.atomic import write_json
from ..io.model_files import library_versions, load_model, read_model_facts
from ..io.output_folder import OutputFolder
from ..model_specs import get_spec, list_models
from . import _args

if TYPE_CHECKING:  # the experiment loads TensorFlow (and tfmot): imported when the command runs
    from ..compress.experiment import ExperimentConfig

# Presets: the small default and --full. Explicit flags win over both.
SMALL = {"epochs": 6, "prune_epochs": 3, "alpha": 0.35, "max_train_images": 6000, "max_eval_images": 2000,
         "latency_runs": 30, "augment": False, "pqat_epochs": 0, "dense_fine_tune": True}
# CIFAR-10 at 32 px leaves MobileNetV2 a 1x1 final feature map (accuracy 0.23-0.31 measured), so the
# small CIFAR preset upsamples to 64 px and spends its time on more images rather than more epochs.
# Its 1-epoch dense_ft control moved accuracy by 0.2 points at a cost of ~50 s, so it is off there
# to keep the run within ~15 minutes.
SMALL_CIFAR10 = {**SMALL, "epochs": 6, "prune_epochs": 1, "alpha": 0.5, "max_train_images": 10000,
                 "dense_fine_tune": False}
FULL = {"epochs": 10, "prune_epochs": 2, "alpha": 1.0, "max_train_images": 0, "max_eval_images": 0,
        "latency_runs": 100, "augment": True, "pqat_epochs": 1, "dense_fine_tune": True}
IMAGE_SIZE = {"cifar10": (64, 64), "folder": (64, 96)}  # (small, full)
PRUNE_ENTRIES = ("prune_config.json", "comparison.txt", "comparison.csv", "comparison.json", "pruning_comparison.png",
                 "models", "tflite", "tensorboard")


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one number, got {text!r}")
    return values


def _names(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``tfxai prune``: the data and the model, then the runs and their budget."""
    _add_data_and_model_flags(parser)
    _add_run_flags(parser)


def _add_data_and_model_flags(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--data-dir", help="class-folder dataset (<root>/train/<class>/*, optional val/) "
                     "or a MedMNIST .npz; accuracy is measured on val (carved from train if absent)")
    src.add_argument("--dataset", choices=("cifar10",),
                     help="a named dataset: cifar10 (unpacked once from --cifar10-archive into the cache)")
    parser.add_argument("--cifar10-archive", help="CIFAR-10 train as train/<class>/*.jpg in a .tar.gz "
                        "(default: ../shared/data/cifar10/cifar10_train_jpg.tar.gz beside the repo)")
    parser.add_argument("--model-type", default="mobilenet_v2", choices=list_models())
    parser.add_argument("--alpha", type=_args.float_range(0.35, 1.4),
                        help="MobileNetV2 width multiplier (small 0.35, CIFAR-10 0.5, --full 1.0)")
    parser.add_argument("--width", type=_args.int_range(4, 512), help="custom_cnn / resnet18 base width")
    parser.add_argument("--depth", type=_args.int_range(1, 6), help="custom_cnn depth (blocks)")
    _args.add_checkpoint(parser, required=False, help="a trained .keras model to use as the dense baseline "
                         "(no dense training; its input size must match --image-size/--channels)")
    parser.add_argument("--image-size", type=_args.IMAGE_SIZE, help="square input side (cifar10: 64, upsampled from "
                        "32; folders: 64, --full 96)")
    parser.add_argument("--channels", type=int, choices=(1, 3), help="1 grey, 3 RGB (default 3 for "
                        "cifar10, 1 for folders)")
    _args.add_resize_mode(parser, unless="the --checkpoint's")


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--modes", type=_names, default=("one_shot", "iterative", "random"),
                        help="comma list of one_shot, iterative, random (default: all three)")
    parser.add_argument("--sparsities", type=_floats, default=(0.5, 0.7, 0.8, 0.9),
                        help="comma list of target sparsities in (0, 1) (default 0.5,0.7,0.8,0.9)")
    parser.add_argument("--epochs", type=_args.POSITIVE, help="dense baseline epochs (small 6, --full 10)")
    parser.add_argument("--prune-epochs", type=_args.POSITIVE,
                        help="epochs of every pruned run, the same budget for all modes (small 3, CIFAR-10 1, --full 2)")
    parser.add_argument("--batch-size", type=_args.int_range(1, 4096), default=64)
    _args.add_learning_rate(parser, 4e-3, help="dense training: the start of a cosine decay to 5%% of it")
    parser.add_argument("--fine-tune-learning-rate", type=_args.float_range(0.0, 1.0, low_open=True), default=5e-4,
                        help="pruned runs")
    parser.add_argument("--ramp-fraction", type=_args.float_range(0.0, 1.0, low_open=True), default=0.5,
                        help="iterative: part of the pruned budget over which sparsity ramps up")
    parser.add_argument("--frequency", type=_args.POSITIVE, default=10, help="iterative: steps between mask updates")
    parser.add_argument("--min-params", type=_args.NON_NEGATIVE, default=1024,
                        help="layers with fewer kernel weights are not pruned (the first conv never is)")
    parser.add_argument("--policy", choices=("default", "latency"), default="default",
                        help="which layers are pruned: default (Conv2D and Dense kernels) or latency "
                        "(tfmot PruneForLatencyOnXNNPack: 1x1 convs only, for XNNPack sparse inference; "
                        "MobileNetV2 is then built with symmetric stride-2 padding)")
    parser.add_argument("--structured-2x4", action=argparse.BooleanOptionalAction, default=False,
                        help="also run one-shot 2:4 structured sparsity (tfmot sparsity_m_by_n)")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                        help="on-the-fly augmentation (small: off, --full: on)")
    parser.add_argument("--max-train-images", type=_args.NON_NEGATIVE, help="stratified training subset, 0 = all "
                        "(small 6000, CIFAR-10 10000, --full all)")
    parser.add_argument("--max-eval-images", type=_args.NON_NEGATIVE, help="validation subset, 0 = all (small 2000)")
    parser.add_argument("--latency-runs", type=_args.POSITIVE, help="timed runs per latency median")
    parser.add_argument("--calibration-images", type=_args.int_range(1, 100000), default=200,
                        help="training images that calibrate each int8 TFLite file")
    parser.add_argument("--pqat-epochs", type=_args.NON_NEGATIVE,
                        help="epochs of sparsity-preserving quantization-aware training added to every "
                        "one-shot and iterative model (rows <mode>+pqat; small: 0 = off, --full: 1)")
    parser.add_argument("--dense-fine-tune", action=argparse.BooleanOptionalAction, default=None,
                        help="also train the dense model for the pruned runs' budget (row dense_ft; "
                        "on except in the small CIFAR-10 preset)")
    parser.add_argument("--full", action=argparse.BooleanOptionalAction, default=False,
                        help="the full configuration documented in the README (about an hour on 2 CPU cores "
                        "for the chest X-rays)")
    _args.add_seed(parser)
    _args.add_output_dir(parser, "where tables, figure, models, TFLite files and TensorBoard logs go",
                         default=os.path.join("runs", "prune"))
    _args.add_progress(parser)


def build_config(args: argparse.Namespace, source: str) -> ExperimentConfig:
    """ExperimentConfig from the flags: explicit flag > --full preset > small preset."""
    from ..compress.experiment import ExperimentConfig

    preset = FULL if args.full else SMALL_CIFAR10 if source == "cifar10" else SMALL

    def pick(name):
        value = getattr(args, name, None)
        return preset[name] if value is None else value

    try:
        spec = get_spec(args.model_type)
    except ValueError as err:
        raise TfxaiError(str(err)) from None
    options = {}
    if "alpha" in spec.options:
        options["alpha"] = pick("alpha")
    if args.policy == "latency" and "padding" in spec.options:
        options["padding"] = "symmetric"  # XNNPack runs only symmetric stride-2 padding sparse
    for name in ("width", "depth"):
        if getattr(args, name) is not None:
            if name not in spec.options:
                raise TfxaiError(f"--{name} does not apply to {args.model_type!r} (options: {list(spec.options)})")
            options[name] = getattr(args, name)
    sizes = IMAGE_SIZE["cifar10" if source == "cifar10" else "folder"]
    image_size = args.image_size or sizes[1 if args.full else 0]
    channels = args.channels or (3 if source == "cifar10" else 1)
    return ExperimentConfig(
        model_type=args.model_type, model_options=tuple(sorted(options.items())),
        image_size=image_size, channels=channels, resize_mode=args.resize_mode or "pad",
        epochs=pick("epochs"), prune_epochs=pick("prune_epochs"), batch_size=args.batch_size,
        learning_rate=args.learning_rate, fine_tune_learning_rate=args.fine_tune_learning_rate,
        sparsities=tuple(args.sparsities), modes=tuple(args.modes), ramp_fraction=args.ramp_fraction,
        frequency=args.frequency, min_params=args.min_params, structured_2x4=args.structured_2x4,
        augment=pick("augment"), max_train_images=pick("max_train_images") or None,
        max_eval_images=pick("max_eval_images") or None, latency_runs=pick("latency_runs"),
        calibration_images=args.calibration_images, dense_fine_tune=pick("dense_fine_tune"),
        pqat_epochs=pick("pqat_epochs"), hflip=source == "cifar10", seed=args.seed, policy=args.policy)


def run(args: argparse.Namespace) -> int:
    from ..compress.experiment import prepare_cifar10

    if args.checkpoint and not os.path.isfile(args.checkpoint):
        raise DataError(f"--checkpoint {args.checkpoint!r} does not exist")
    source = "cifar10" if args.dataset else "folder"
    cfg = build_config(args, source)
    if args.checkpoint and args.image_size is None:
        shape = load_model(args.checkpoint).input_shape
        cfg = replace(cfg, image_size=int(shape[1]), channels=args.channels or int(shape[3]))
    if args.checkpoint and args.resize_mode is None:  # prepare images the way the model was trained
        cfg = replace(cfg, resize_mode=(read_model_facts(args.checkpoint) or {}).get("resize_mode", "pad"))
    data_dir = prepare_cifar10(args.cifar10_archive) if args.dataset == "cifar10" else args.data_dir
    folder = OutputFolder(args.output_dir, "prune", [data_dir, args.checkpoint])
    with folder.lock():  # another command writing here stops this one before any work
        folder.claim(PRUNE_ENTRIES)
        return _compare(args, cfg, data_dir)


def _compare(args, cfg: ExperimentConfig, data_dir: str) -> int:
    from ..compress.experiment import run_comparison

    data = load_splits(data_dir, cfg.image_size, cfg.channels, cfg.resize_mode, seed=cfg.seed,
                       progress=args.progress)
    print(data.summary())
    run_config = {
        "command": "prune", "arguments": vars(args),
        "experiment": cfg.to_dict(), "class_names": list(data.class_names), "image_size": cfg.image_size,
        "channels": cfg.channels, "resize_mode": cfg.resize_mode, "threshold": 0.5,
        "normalization": "inside the model; feed raw pixels in [0, 255]", "data_dir": data_dir,
        "versions": library_versions(),
    }
    write_json(os.path.join(args.output_dir, "prune_config.json"), run_config)
    doc = run_comparison(data, args.output_dir, cfg, checkpoint=args.checkpoint,
                         verbose=2 if args.progress else 0)
    print(comparison_table(doc))
    print(f"wrote {os.path.join(args.output_dir, 'comparison.txt')}, comparison.csv, comparison.json, "
          f"pruning_comparison.png; TensorBoard: tensorboard --logdir {os.path.join(args.output_dir, 'tensorboard')}"
          f" ({doc['seconds'] / 60:.1f} min)")
    return 0
