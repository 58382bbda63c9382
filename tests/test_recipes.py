"""Named training recipes (tfxai.training.recipes) and how ``tfxai train --recipe`` combines them with flags."""
import pytest

from tfxai.cli import build_parser
from tfxai.commands import train as train_cmd
from tfxai.training import TrainConfig
from tfxai.training.recipes import DEFAULT_RECIPE, Recipe, get_recipe, list_recipes

ROBUST = "mnv2-robust"


def _args(*argv):
    return build_parser(only="train").parse_args(["train", *argv])


@pytest.mark.parametrize("name", list_recipes())
def test_every_recipe_gives_a_valid_config(name):
    cfg = get_recipe(name).train_config("some/folder", output_dir="out")  # checked when built
    assert cfg.recipe == name and cfg.data_dir == "some/folder"


def test_the_readme_recipe_keeps_the_readme_benchmark_settings():
    cfg = get_recipe("readme-mobilenet").train_config("d")
    assert (cfg.model_type, cfg.image_size, cfg.epochs, cfg.batch_size, cfg.learning_rate) == (
        "mobilenet_v2", 128, 20, 32, 1e-3)
    assert cfg.model_options == {"alpha": 0.5} and cfg.label_smoothing == 0.05 and cfg.patience == 5
    assert cfg.augment and cfg.augment_config == {} and cfg.lr_schedule == "plateau" and cfg.ema_decay == 0.0


def test_the_robust_recipes_differ_only_where_their_names_say():
    robust, noeq, cnn = (get_recipe(n).settings for n in (ROBUST, "mnv2-robust-noeq", "cnn-robust"))
    assert robust["model_options"] == {"alpha": 0.5, "preprocessing": "equalize"}
    assert (robust["lr_schedule"], robust["ema_decay"], robust["balanced_validation"]) == ("cosine", 0.998, True)
    assert {k: v for k, v in noeq.items() if k != "model_options"} == {
        k: v for k, v in robust.items() if k != "model_options"}
    assert noeq["model_options"] == {"alpha": 0.5}
    assert cnn["model_type"] == "custom_cnn" and cnn["model_options"]["preprocessing"] == "equalize"
    assert cnn["augment_config"] == robust["augment_config"]
    # measured on the protocol epoch by epoch: the last epoch held up better than the lowest val loss
    assert (cnn["select_epoch"], cnn["threshold_policy"], cnn["target_sensitivity"]) == ("last", "sensitivity", 0.93)


@pytest.mark.parametrize("name,changed", [
    ("cnn-lungmask", {"model_options": {"width": 16, "depth": 4, "preprocessing": "equalize", "focus": "mask"}}),
    ("cnn-lungcrop", {"model_options": {"width": 16, "depth": 4, "preprocessing": "equalize", "focus": "crop"}}),
    ("cnn-robust-160", {"image_size": 160}),
    ("cnn-robust-long", {"epochs": 40, "patience": 40}),
])
def test_each_candidate_is_cnn_robust_with_one_change(name, changed):
    base, candidate = get_recipe("cnn-robust").settings, get_recipe(name).settings
    assert {k: v for k, v in candidate.items() if base.get(k) != v} == changed
    assert set(candidate) == set(base) | set(changed)


def test_recipe_settings_are_copied_not_shared():
    a = get_recipe(ROBUST).train_config("d")
    a.model_options["alpha"] = 9.0
    a.augment_config["noise"] = 99.0
    b = get_recipe(ROBUST).train_config("d")
    assert b.model_options["alpha"] == 0.5 and b.augment_config["noise"] == 6.0


def test_a_recipe_with_an_unknown_field_or_name_is_refused():
    with pytest.raises(ValueError, match="'lr'"):  # the old spelling of learning_rate
        Recipe("x", "bad", {"lr": 1.0})
    with pytest.raises(ValueError, match="no-such"):
        get_recipe("no-such")
    with pytest.raises(ValueError, match="colour"):
        get_recipe(ROBUST).train_config("d", colour=1)


def test_recipe_none_gives_the_plain_defaults_as_before(tmp_path):
    cfg = train_cmd.config_from_args(_args("--data-dir", str(tmp_path), "--recipe", "none"))
    assert cfg.recipe is None
    plain = TrainConfig(str(tmp_path), augment_config={"hflip": False}, output_dir=None)
    assert cfg == plain  # every field as TrainConfig's defaults; augment_config as it always was


def test_a_folder_without_model_flags_gets_the_default_recipe_and_flags_still_override(tmp_path):
    assert DEFAULT_RECIPE in list_recipes()
    cfg = train_cmd.config_from_args(_args("--data-dir", str(tmp_path), "--epochs", "3", "--seed", "2"))
    assert cfg == get_recipe(DEFAULT_RECIPE).train_config(str(tmp_path), seed=2, epochs=3, output_dir=None)
    typed = train_cmd.config_from_args(_args("--data-dir", str(tmp_path), "--select-epoch", "val_loss",
                                             "--threshold-policy", "fixed"))
    assert (cfg.select_epoch, typed.select_epoch, typed.threshold_policy) == ("last", "val_loss", "fixed")


@pytest.mark.parametrize("flags", [("--model-type", "custom_cnn"), ("--image-size", "64"), ("--channels", "3"),
                                   ("--pretrained",), ("--weights", "w.keras")])
def test_choosing_a_model_means_no_default_recipe(tmp_path, flags):
    # chosen_recipe, not a whole config: --pretrained alone gives no valid config (custom_cnn has no ImageNet weights)
    assert train_cmd.chosen_recipe(_args("--data-dir", str(tmp_path), *flags), str(tmp_path)) is None


def test_a_medmnist_file_gets_no_default_recipe(tmp_path):
    npz = tmp_path / "pneumoniamnist.npz"
    npz.write_bytes(b"")
    assert train_cmd.config_from_args(_args("--data-dir", str(npz))).recipe is None


def test_explicit_flags_override_the_recipe_and_merge_options(tmp_path):
    recipe = get_recipe(ROBUST).settings
    cfg = train_cmd.config_from_args(_args(
        "--data-dir", str(tmp_path), "--recipe", ROBUST, "--epochs", "3", "--image-size", "64",
        "--model-options", '{"dropout": 0.5}', "--augment-options", '{"noise": 2.0}', "--no-augment",
        "--learning-rate", "0.01", "--ema-decay", "0"))
    assert (cfg.epochs, cfg.image_size, cfg.augment, cfg.learning_rate, cfg.ema_decay) == (3, 64, False, 0.01, 0.0)
    assert cfg.model_options == {**recipe["model_options"], "dropout": 0.5}
    assert cfg.augment_config == {**recipe["augment_config"], "noise": 2.0}
    assert cfg.label_smoothing == recipe["label_smoothing"] and cfg.lr_schedule == "cosine"
    assert cfg.recipe == ROBUST


def test_a_recipe_alone_gives_exactly_the_recipes_config(tmp_path):
    cfg = train_cmd.config_from_args(_args("--data-dir", str(tmp_path), "--recipe", ROBUST, "--seed", "3"))
    assert cfg == get_recipe(ROBUST).train_config(str(tmp_path), seed=3, output_dir=None)


def test_another_model_type_keeps_only_the_options_it_accepts(tmp_path):
    cfg = train_cmd.config_from_args(_args("--data-dir", str(tmp_path), "--recipe", "mnv2-equalize",
                                           "--model-type", "custom_cnn"))
    assert cfg.model_type == "custom_cnn"
    assert cfg.model_options == {"preprocessing": "equalize"}  # alpha is MobileNetV2's only


def test_hflip_and_augment_options_combine_without_a_recipe(tmp_path):
    cfg = train_cmd.config_from_args(_args("--data-dir", str(tmp_path), "--recipe", "none", "--augment-options", '{"hflip": true, "blur": 0.5}'))
    assert cfg.augment_config == {"hflip": True, "blur": 0.5}
    cfg = train_cmd.config_from_args(_args("--data-dir", str(tmp_path), "--recipe", "none", "--augment-options", '{"blur": 0.5}', "--hflip"))
    assert cfg.augment_config == {"hflip": True, "blur": 0.5}


@pytest.mark.parametrize("flag,value", [("--recipe", "no-such"), ("--ema-decay", "1"), ("--ema-decay", "-0.5"),
                                        ("--lr-schedule", "step"), ("--holdout-pattern", " , "),
                                        ("--augment-options", "[1]")])
def test_bad_new_flags_are_one_line_with_exit_2(tmp_path, capsys, flag, value):
    from tfxai.cli import main

    assert main(["train", "--data-dir", str(tmp_path), flag, value]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag in err


def test_a_bad_augment_option_is_named_with_its_flag_before_any_work(tmp_path, synthetic_dir, capsys):
    from tfxai.cli import main

    assert main(["train", "--data-dir", synthetic_dir, "--output-dir", str(tmp_path / "o"),
                 "--augment-options", '{"fog": 1}', "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--augment-options" in err and "fog" in err
    assert not (tmp_path / "o").exists()
