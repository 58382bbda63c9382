"""``tfxai train``: train a classifier on a class-folder dataset or a MedMNIST .npz."""
from __future__ import annotations

import argparse

from ..data import pneumoniamnist_path
from ..errors import TfxaiError
from ..metrics import format_metrics
from ..models import list_models
from ..training import STRATEGIES, THRESHOLD_POLICIES, TrainConfig, train
from . import _args


def resolve_data_dir(args) -> str:
    """``--data-dir`` or the cached file of ``--dataset``; one of them is required."""
    if args.data_dir and args.dataset:
        raise TfxaiError("give either --data-dir or --dataset, not both")
    if args.dataset == "pneumoniamnist":
        return pneumoniamnist_path(download=args.download)
    if not args.data_dir:
        raise TfxaiError("--data-dir is required (or --dataset pneumoniamnist)")
    return args.data_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    _args.add_data_source(p)
    p.add_argument("--model-type", default="custom_cnn", choices=list_models())
    p.add_argument("--epochs", type=_args.POSITIVE, default=20)
    p.add_argument("--batch-size", type=_args.int_range(1, 4096), default=32)
    _args.add_output_dir(p, "run folder (default saved_models/<model-type>-<time>); a finished run there is "
                            "kept and a new folder used unless --overwrite")
    p.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=False,
                   help="replace a finished run in --output-dir (only files tfxai wrote are removed)")
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=False,
                   help="start MobileNetV2 from ImageNet weights (Keras cache, or downloaded)")
    p.add_argument("--weights", help="start from this .keras model or weights file")
    p.add_argument("--image-size", type=_args.IMAGE_SIZE, default=224, help="input side in pixels (16-1024)")
    p.add_argument("--channels", type=int, default=1, choices=(1, 3), help="1 = grey (X-rays), 3 = RGB")
    _args.add_resize_mode(p)
    _args.add_learning_rate(p, 1e-3)
    _args.add_seed(p)
    p.add_argument("--val-fraction", type=_args.float_range(0.0, 0.5, low_open=True, high_open=True), default=0.15,
                   help="share of train carved (by patient) as validation when there is no usable val split")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=False,
                   help="left-right flips (off by default: the heart is on the left)")
    p.add_argument("--class-weights", action=argparse.BooleanOptionalAction, default=True,
                   help="balance classes in the loss (Kermany is about 1:3 NORMAL:PNEUMONIA)")
    p.add_argument("--label-smoothing", type=_args.float_range(0.0, 0.5, high_open=True), default=0.0)
    p.add_argument("--patience", type=_args.NON_NEGATIVE, default=6, help="early stopping patience (epochs)")
    p.add_argument("--freeze-epochs", type=_args.NON_NEGATIVE, default=3,
                   help="--pretrained: epochs with the backbone frozen")
    p.add_argument("--fine-tune-layers", type=_args.NON_NEGATIVE, default=40,
                   help="--pretrained: backbone layers then unfrozen")
    p.add_argument("--model-options", type=_args.json_object, default={},
                   help='JSON of model options, e.g. \'{"width": 16, "depth": 3}\' for custom_cnn')
    p.add_argument("--threshold-policy", default="fixed", choices=THRESHOLD_POLICIES,
                   help="fixed 0.5, a target --target-sensitivity, or Youden's J, chosen on validation")
    p.add_argument("--target-sensitivity", type=_args.float_range(0.0, 1.0, low_open=True), default=0.95)
    p.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=False,
                   help="fit temperature scaling on validation")
    p.add_argument("--strategy", default="default", choices=STRATEGIES,
                   help="mirrored: several GPUs on one machine; multiworker: several machines (TF_CONFIG)")
    p.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=True,
                   help="deterministic ops (same --seed, same result)")
    p.add_argument("--max-train-images", type=_args.int_range(2),
                   help="train on a random subset of this many images (quick experiments)")
    p.add_argument("--cache-dir", default="default",
                   help="where decoded images are cached between runs (default $TFXAI_CACHE_DIR or "
                        "~/.cache/tfxai; 'none' for no cache)")
    _args.add_progress(p)


def config_from_args(args) -> TrainConfig:
    return TrainConfig(
        data_dir=resolve_data_dir(args), model_type=args.model_type, output_dir=args.output_dir,
        epochs=args.epochs, batch_size=args.batch_size, image_size=args.image_size, channels=args.channels,
        resize_mode=args.resize_mode, learning_rate=args.learning_rate, seed=args.seed,
        pretrained=args.pretrained, weights=args.weights, model_options=args.model_options,
        val_fraction=args.val_fraction, augment=args.augment, augment_config={"hflip": args.hflip},
        class_weighting=args.class_weights, label_smoothing=args.label_smoothing, patience=args.patience,
        freeze_epochs=args.freeze_epochs, fine_tune_layers=args.fine_tune_layers,
        threshold_policy=args.threshold_policy, target_sensitivity=args.target_sensitivity,
        calibrate=args.calibrate, strategy=args.strategy, deterministic=args.deterministic,
        overwrite=args.overwrite, max_train_images=args.max_train_images,
        cache_dir=None if args.cache_dir in ("none", "") else args.cache_dir,
        verbose=None if args.progress else 0,
    )


def run(args) -> int:
    config = config_from_args(args)
    config.check()
    result = train(config)
    print(format_metrics(result.val_metrics, prefix=f"validation (threshold {result.threshold:.3f}): "))
    print(f"trained in {result.seconds:.0f} s ({result.images_per_second:.0f} training images/s); "
          f"model {result.model_path}; curves {result.output_dir}/training_curves.png; "
          f"TensorBoard: tensorboard --logdir {result.output_dir}/logs")
    return 0
