"""Every configuration is checked one way (tfxai.checks), once, when it is built: a bad value is
refused with a one-line ConfigError naming the field and the value; the CLI names the flag."""
import pytest

from tfxai.errors import ConfigError


def _train(**kw):
    from tfxai.training import TrainConfig

    return TrainConfig("data", **kw)


def _augment(**kw):
    from tfxai.data import AugmentConfig

    return AugmentConfig(**kw)


def _serve(**kw):
    from tfxai.serve.engine import ServeSettings

    return ServeSettings(**kw)


def _explain(**kw):
    from tfxai.explain.settings import ExplainSettings

    return ExplainSettings(**kw)


def _experiment(**kw):
    from tfxai.compress.experiment import ExperimentConfig

    return ExperimentConfig(**kw)


def _model_options(**kw):
    from tfxai.model_specs import get_spec

    return get_spec("custom_cnn").check_options(kw["model_options"])


def _facts(**kw):
    from tfxai.classifier import check_facts

    return check_facts(kw, "run/best_model.keras", 2)


# (config, field, bad value, what the message shows of it)
BAD = [
    (_train, "epochs", 0, "0"), (_train, "learning_rate", float("nan"), "nan"), (_train, "seed", True, "True"),
    (_train, "balanced_validation", "yes", "'yes'"), (_train, "model_type", "vgg", "'vgg'"),
    (_train, "augment_config", {"noise": -2.0}, "'noise'"),
    (_augment, "noise", -2.0, "-2.0"), (_augment, "hflip", 1, "1"), (_augment, "rotation", "7", "'7'"),
    (_serve, "max_batch", 0, "0"), (_serve, "uncertain_band", 0.7, "0.7"),
    (_explain, "steps", 1, "1"), (_explain, "deletion_baseline", "fog", "'fog'"),
    (_explain, "methods", ("gradcam", "magic"), "'magic'"),
    (_experiment, "sparsities", (0.5, 1.5), "1.5"), (_experiment, "policy", "fast", "'fast'"),
    (_experiment, "epochs", -1, "-1"),
    (_model_options, "model_options", {"width": 2}, "2"), (_model_options, "model_options", {"depth": 2.5}, "2.5"),
    (_facts, "threshold", 7, "7"), (_facts, "temperature", -1.0, "-1.0"), (_facts, "resize_mode", "zoom", "'zoom'"),
]


@pytest.mark.parametrize("build,field,value,shown", BAD,
                         ids=[f"{b.__name__.strip('_')}-{f}-{s}" for b, f, _, s in BAD])
def test_each_config_refuses_a_bad_value_with_a_one_line_error_naming_the_field(build, field, value, shown):
    with pytest.raises(ConfigError) as err:
        build(**{field: value})
    message = str(err.value)
    assert err.value.field == field and f"{field}: " in message
    assert shown in message and "\n" not in message


def test_good_values_pass_and_the_defaults_are_valid():
    for build in (_train, _augment, _serve, _explain, _experiment):
        build()
    _train(epochs=1, learning_rate=1, split_seed=None, max_train_images=2, augment_config={"aspect": 0.2})
    _model_options(model_options={"width": 8, "depth": 2, "preprocessing": "equalize"})
    assert _facts(threshold=0.3, temperature=None)["threshold"] == 0.3


def test_a_config_is_checked_again_when_copied_with_a_change():
    from dataclasses import replace

    with pytest.raises(ConfigError, match="^batch_size: "):
        replace(_train(), batch_size=0)


def test_the_cli_names_the_flag_that_set_a_field_or_the_file_a_value_came_from():
    from tfxai.cli import build_parser
    from tfxai.commands._args import config_error_message, flag_of

    train = build_parser(only="train").commands["train"]
    assert flag_of(train, "class_weighting") == "--class-weights"
    assert flag_of(train, "augment_config") == "--augment-options"
    assert flag_of(train, "learning_rate") == "--learning-rate"
    assert flag_of(train, "lr_patience") is None  # a field no flag sets (recipes and the API do)
    assert flag_of(build_parser(only="serve").commands["serve"], "max_batch") == "--batch-size"
    assert config_error_message(train, ConfigError("lr_patience", "must be ...")) == "lr_patience: must be ..."
    from_file = ConfigError("threshold", "must be ...", source="m.keras")
    assert config_error_message(build_parser(only="predict").commands["predict"], from_file) == (
        "m.keras: threshold: must be ...")
