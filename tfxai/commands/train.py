"""``tfxai train``: train a classifier on a class-folder dataset or a MedMNIST .npz.

The flags need only light modules (the config, the recipes, the model specs); training, and
TensorFlow with it, is imported when the command runs.
"""
from __future__ import annotations

import argparse
import os

from .. import metrics as metrics_lib
from ..data import pneumoniamnist_path
from ..errors import TfxaiError
from ..model_specs import get_spec, list_models
from ..training.config import LR_SCHEDULES, SELECT_EPOCHS, STRATEGIES, THRESHOLD_POLICIES, TrainConfig
from ..training.recipes import DEFAULT_RECIPE, RECIPE_FIELDS, get_recipe, list_recipes
from . import _args

# A flag that sets a TrainConfig field has that field as its dest (tfxai.commands._args.flag_of).
# The flags of the fields a recipe may set (RECIPE_FIELDS) are None unless typed: an explicit flag
# overrides the recipe, and without either the TrainConfig default applies. The JSON ones are
# merged into the recipe's options instead.
MERGED_FIELDS = ("model_options", "augment_config")
OR_RECIPE = "the recipe's"


def _default(field: str) -> str:
    """How the help shows a recipe-settable flag's default: ``default 20, or the recipe's``."""
    value = TrainConfig.__dataclass_fields__[field].default
    shown = {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value
    return f"default {shown}, or {OR_RECIPE}"


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
    """The flags of ``tfxai train``: the model and schedule, then the validation and the rest."""
    _add_model_flags(p)
    _add_validation_flags(p)
    _add_training_flags(p)


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    _args.add_data_source(p)
    p.add_argument("--recipe", choices=[*list_recipes(), "none"],
                   help="start from a named training recipe (tfxai.training.recipes); flags given explicitly "
                        f"override its settings. Default: {DEFAULT_RECIPE} (the recipe that held up best under "
                        "the shift-aware validation, see the README) for a folder of images when none of "
                        "--model-type, --image-size, --channels, --weights, --pretrained is given; otherwise, "
                        "or with 'none', no recipe: the defaults below")
    p.add_argument("--model-type", choices=list_models(), help=f"({_default('model_type')})")
    p.add_argument("--epochs", type=_args.POSITIVE, help=f"({_default('epochs')})")
    p.add_argument("--batch-size", type=_args.int_range(1, 4096), help=f"({_default('batch_size')})")
    _args.add_output_dir(p, "run folder (default saved_models/<model-type>-<time>); a finished run there is "
                            "kept and a new folder used unless --overwrite")
    p.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=False,
                   help="replace a finished run in --output-dir (only files tfxai wrote are removed)")
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=False,
                   help="start MobileNetV2 from ImageNet weights (Keras cache, or downloaded)")
    p.add_argument("--weights", help="start from this .keras model or weights file")
    p.add_argument("--image-size", type=_args.IMAGE_SIZE, help=f"input side in pixels, 16-1024 ({_default('image_size')})")
    p.add_argument("--channels", type=int, choices=(1, 3), help=f"1 = grey (X-rays), 3 = RGB ({_default('channels')})")
    _args.add_train_resize_mode(p, unless=OR_RECIPE)
    _args.add_learning_rate(p, TrainConfig.learning_rate, unless=OR_RECIPE)
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES,
                   help=f"plateau: cut by 0.3 when the validation loss stalls; cosine: decay over all epochs "
                        f"({_default('lr_schedule')})")
    p.add_argument("--ema-decay", type=_args.float_range(0.0, 1.0, high_open=True),
                   help=f"> 0: validate and save an exponential moving average of the weights, e.g. 0.998 "
                        f"({_default('ema_decay')})")
    p.add_argument("--select-epoch", choices=SELECT_EPOCHS,
                   help=f"the epoch saved as the model: val_loss = the lowest validation loss, last = the end "
                        f"of the schedule ({_default('select_epoch')})")
    _args.add_seed(p)


def _add_validation_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split-seed", type=_args.NON_NEGATIVE,
                   help="seed of the patient-grouped validation split (default: --seed); runs that differ only in "
                        "--seed with one --split-seed share their validation split and can be averaged with "
                        "`tfxai ensemble`")
    p.add_argument("--folds", type=_args.int_range(2, 20),
                   help="k-fold cross-validation (tfxai.training.folds): the training images (minus the validation "
                        "split, and minus --holdout-pattern) cut into this many folds grouped by patient and "
                        "stratified by class; one run folder per fold (fold_1 ...), oof_predictions.csv, "
                        "cv_metrics.json/.png and ensemble.keras (the fold models as one model) in --output-dir; "
                        "a killed run resumes fold by fold")
    p.add_argument("--val-fraction", type=_args.float_range(0.0, 0.5, low_open=True, high_open=True), default=0.15,
                   help="share of train carved (by patient) as validation when there is no usable val split")
    p.add_argument("--holdout-pattern", type=_args.file_globs,
                   help="shift-aware validation (tfxai.shift): hold the training files whose names match this "
                        "glob (e.g. 'NORMAL2-*', an acquisition batch; several separated by commas) out of "
                        "training and model selection, carve the validation split from the rest, and report "
                        "batch-shift and synthetic-shift metrics after training (shift_metrics.json)")
    p.add_argument("--balanced-validation", action=argparse.BooleanOptionalAction,
                   help="class-balanced validation loss for early stopping and the best checkpoint "
                        f"({_default('balanced_validation')}; always on with --holdout-pattern)")
    p.add_argument("--threshold-policy", choices=THRESHOLD_POLICIES,
                   help="fixed 0.5, a target --target-sensitivity, or Youden's J, chosen on validation "
                        f"({_default('threshold_policy')})")
    p.add_argument("--target-sensitivity", type=_args.float_range(0.0, 1.0, low_open=True),
                   help=f"({_default('target_sensitivity')})")
    p.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=False,
                   help="fit temperature scaling on validation")


def _add_training_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--augment", action=argparse.BooleanOptionalAction,
                   help=f"on-the-fly augmentation ({_default('augment')})")
    p.add_argument("--augment-options", dest="augment_config", type=_args.json_object,
                   help='JSON of tfxai.data.AugmentConfig fields over the recipe\'s, e.g. \'{"aspect": 0.2}\'')
    p.add_argument("--hflip", action=argparse.BooleanOptionalAction,
                   help="left-right flips (off by default: the heart is on the left)")
    p.add_argument("--class-weights", dest="class_weighting", action=argparse.BooleanOptionalAction,
                   help=f"balance classes in the loss, Kermany is about 1:3 NORMAL:PNEUMONIA "
                        f"({_default('class_weighting')})")
    p.add_argument("--label-smoothing", type=_args.float_range(0.0, 0.5, high_open=True),
                   help=f"({_default('label_smoothing')})")
    p.add_argument("--patience", type=_args.NON_NEGATIVE,
                   help=f"early stopping patience in epochs ({_default('patience')})")
    p.add_argument("--freeze-epochs", type=_args.NON_NEGATIVE, default=3,
                   help="--pretrained: epochs with the backbone frozen")
    p.add_argument("--fine-tune-layers", type=_args.NON_NEGATIVE, default=40,
                   help="--pretrained: backbone layers then unfrozen")
    p.add_argument("--model-options", type=_args.json_object, default={},
                   help='JSON of model options over the recipe\'s, e.g. \'{"width": 16, "depth": 3}\' for '
                        'custom_cnn, \'{"preprocessing": "equalize"}\' for any model')
    p.add_argument("--strategy", default="default", choices=STRATEGIES,
                   help="mirrored: several GPUs on one machine; multiworker: several machines (TF_CONFIG)")
    p.add_argument("--deterministic", action=argparse.BooleanOptionalAction,
                   help=f"deterministic ops, same --seed same result ({_default('deterministic')})")
    p.add_argument("--max-train-images", type=_args.int_range(2),
                   help="train on a random subset of this many images (quick experiments)")
    p.add_argument("--cache-dir", default="default",
                   help="where decoded images are cached between runs (default $TFXAI_CACHE_DIR or "
                        "~/.cache/tfxai; 'none' for no cache)")
    _args.add_progress(p)


# Flags that choose the model: any of them means "my own model", so no default recipe.
MODEL_CHOICES = ("model_type", "image_size", "channels", "weights", "pretrained")


def chosen_recipe(args, data_dir: str) -> str | None:
    """``--recipe`` NAME, None for ``none``; unset: :data:`DEFAULT_RECIPE` for a folder of images
    (not a MedMNIST .npz) when no flag in MODEL_CHOICES is given, else None."""
    name = getattr(args, "recipe", None)
    if name is not None:
        return None if name == "none" else name
    own_model = any(getattr(args, flag, None) not in (None, False) for flag in MODEL_CHOICES)
    return None if own_model or not os.path.isdir(data_dir) else DEFAULT_RECIPE


def config_from_args(args) -> TrainConfig:
    """The TrainConfig of these flags: a flag typed > the recipe's setting (:func:`chosen_recipe`)
    > TrainConfig's default."""
    data_dir = resolve_data_dir(args)
    name = chosen_recipe(args, data_dir)
    recipe = get_recipe(name) if name else None
    settings = recipe.settings if recipe else {}
    typed = {field: getattr(args, field) for field in RECIPE_FIELDS
             if field not in MERGED_FIELDS and getattr(args, field, None) is not None}
    model_options = dict(settings.get("model_options", {}))
    model_type = typed.get("model_type", settings.get("model_type", TrainConfig.model_type))
    if model_type != settings.get("model_type", TrainConfig.model_type):
        accepted = get_spec(model_type).options  # another model than the recipe's: keep the options it has
        model_options = {k: v for k, v in model_options.items() if k in accepted}
    model_options.update(args.model_options or {})
    # Without a recipe augment_config is {"hflip": ...} as it always was (a resume compares it).
    augment_config = dict(settings.get("augment_config", {})) if recipe else {"hflip": False}
    augment_config.update(args.augment_config or {})
    if args.hflip is not None:
        augment_config["hflip"] = args.hflip
    values = dict(
        output_dir=args.output_dir, seed=args.seed, pretrained=args.pretrained, weights=args.weights,
        model_options=model_options, val_fraction=args.val_fraction, augment_config=augment_config,
        freeze_epochs=args.freeze_epochs, fine_tune_layers=args.fine_tune_layers, calibrate=args.calibrate,
        strategy=args.strategy, overwrite=args.overwrite, max_train_images=args.max_train_images,
        split_seed=args.split_seed,
        cache_dir=None if args.cache_dir in ("none", "") else args.cache_dir,
        verbose=None if args.progress else 0, **typed,
    )
    return recipe.train_config(data_dir, **values) if recipe else TrainConfig(data_dir, **values)


def format_scores(scores: dict) -> str:
    """Console lines for :func:`tfxai.shift.score_protocol`'s result."""
    t = scores["target_sensitivity"]
    lines = [f"shift-aware validation: standard-val ROC-AUC {scores['standard_auc']:.4f}; batch-shift "
             f"ROC-AUC {scores['shift_auc']:.4f}, specificity {scores['shift_spec']:.3f} at the standard-val "
             f"threshold for sensitivity {t:.2f} (sensitivity there {scores['shift_sens']:.3f})"]
    if "native_auc" in scores:
        lines.append(f"native-shaped films ({scores['native_n']} validation X-rays stretched back to width/height "
                     f"{scores['native_aspect'][0]}-{scores['native_aspect'][1]}, read as files): ROC-AUC "
                     f"{scores['native_auc']:.4f}, specificity {scores['native_spec']:.3f} at the standard-val "
                     f"threshold, out-of-distribution flags {scores['native_flagged']:.1%}")
    if "synthetic_auc_mean" in scores:
        lines.append(f"synthetic shifts of the held-out normals: ROC-AUC mean {scores['synthetic_auc_mean']:.4f}, "
                     f"worst {scores['synthetic_auc_worst']:.4f} ({scores['synthetic_worst']}); specificity "
                     f"mean {scores['synthetic_spec_mean']:.3f}, worst {scores['synthetic_spec_worst']:.3f}")
    return "\n".join(lines)


def _run_folds(config: TrainConfig, args) -> int:
    from ..training.cv_report import CV_METRICS_NAME, CV_PLOT_NAME, OOF_NAME, cv_table
    from ..training.folds import run_folds

    result = run_folds(config, args.folds, args.holdout_pattern)
    m, out = result.metrics, result.output_dir
    print(f"{m['folds']}-fold cross-validation, {m['training_images']} training images, metrics at the threshold "
          f"{m['oof']['threshold']:.3f} chosen on the out-of-fold predictions ({m['oof']['threshold_source']}):")
    print(cv_table(m))
    if "shift_auc" in m["summary"]:
        print(f"the shift protocol's columns per fold (held out of every fold: {args.holdout_pattern!r}):")
        print(cv_table(m, shift=True))
    print(metrics_lib.format_with_ci(m["oof"]["metrics"], m["oof"]["ci95"], prefix="pooled out-of-fold, 95 % CI: "))
    ens = m["ensemble"]
    print(f"ensemble of the {m['folds']} fold models: {result.ensemble_path}, threshold {ens['threshold']:.3f} chosen "
          f"on its own probabilities of the {m['validation_images']} validation images")
    print(metrics_lib.format_metrics(ens["val_metrics"], prefix="  validation (flatters: the threshold was chosen there): "))
    if "shift" in ens:
        print("  " + format_scores(ens["shift"]).replace("\n", "\n  "))
    if result.skipped:
        print(f"folds {', '.join(map(str, result.skipped))} were finished by an earlier run and kept")
    print(f"done in {result.seconds:.0f} s; {out}/{OOF_NAME}, {out}/{CV_METRICS_NAME}, {out}/{CV_PLOT_NAME}, "
          f"one run folder per fold ({out}/fold_1 ...)")
    return 0


def run(args) -> int:
    from ..shift import train_with_holdout
    from ..training.loop import train

    config = config_from_args(args)
    if config.recipe:
        how = "flags given explicitly override it"
        if args.recipe is None:
            how = f"the default for a folder of X-rays; {how}; --recipe none for the plain defaults"
        print(f"recipe {config.recipe}: {get_recipe(config.recipe).description} ({how})")
    if args.folds:
        return _run_folds(config, args)
    if args.holdout_pattern:
        result, scores = train_with_holdout(config, args.holdout_pattern)
        print(format_scores(scores))
    else:
        result = train(config)
    print(metrics_lib.format_metrics(result.val_metrics, prefix=f"validation (threshold {result.threshold:.3f}): "))
    print(f"trained in {result.seconds:.0f} s ({result.images_per_second:.0f} training images/s); "
          f"model {result.model_path}; model card {result.output_dir}/model_card.md; "
          f"curves {result.output_dir}/training_curves.png; "
          f"TensorBoard: tensorboard --logdir {result.output_dir}/logs")
    return 0
