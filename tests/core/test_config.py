import pytest

from tests.helpers import ROOT
from tgs.core.config import SMP_ONLY, Config, config_from_dict, dump_config, load_config
from tgs.core.errors import ConfigError


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\nepochs: 3\nmodel_kwargs: {n_filters: 8}\nlr: 1\n")
    cfg = load_config(path, ["epochs=5", "model_kwargs.dropout=0.1", "folds=[0,2]"])
    assert cfg.name == "x" and cfg.epochs == 5 and cfg.lr == 1.0
    assert cfg.model_kwargs == {"n_filters": 8, "dropout": 0.1}
    assert cfg.folds == [0, 2]
    assert config_from_dict(load_config(path).to_dict()) == load_config(path)
    assert "epochs: 3" in dump_config(load_config(path))


def test_unknown_key_suggests(tmp_path):
    with pytest.raises(ConfigError, match="did you mean epochs"):
        load_config(None, ["epoch=3"])
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="unknown config key 'learning_rate'"):
        load_config(path)


def test_bad_types_and_forms():
    with pytest.raises(ConfigError, match="config epochs should be an integer, got 'many'"):
        load_config(None, ["epochs=many"])
    with pytest.raises(ConfigError, match="not key=value"):
        load_config(None, ["epochs"])
    with pytest.raises(ConfigError, match="not found"):
        load_config("nope.yaml")
    assert load_config(None) == Config()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model_kwargs=[1]"], r"config model_kwargs should be a mapping, got \[1\]"),
        (["folds=1"], "config folds should be a list of integers or null, got 1"),
        (["min_areas=[0, 1.5]"], "config min_areas should be a list of integers, got"),
        (["epochs=true"], "config epochs should be an integer, got True"),
        (["epochs=null"], "config epochs should be an integer, got None"),
        (["epochs=0"], "config epochs must be >= 1, got 0"),
        (["ema=1"], "config ema must be < 1, got 1.0"),
        (["hflip=1.5"], "config hflip must be <= 1, got 1.5"),
        (["scheduler=step"], r"unknown scheduler 'step' \(valid: cosine, cosine_restarts, plateau"),
        (["gate=max"], r"unknown gate 'max' \(valid: head, mask_max, mean\)"),
        (
            ["model_kwargs=[1]", "model_kwargs.n_filters=8"],
            "model_kwargs is \\[1\\], not a mapping",
        ),
    ],
)
def test_values_checked_against_the_field_types(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_typed_values_accepted():
    cfg = load_config(
        None, ["lr=1", "encoder_weights=null", "model_kwargs=null", "model_kwargs.x=2"]
    )
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)  # an int is taken for a float
    assert cfg.encoder_weights is None and cfg.model_kwargs == {"x": 2}
    assert load_config(None, ["folds=null"]).folds is None


def test_shipped_configs_load():
    root = ROOT
    from tgs.train.validate import validate_config

    names = sorted(p.stem for p in (root / "tgs/resources/configs").glob("*.yaml"))
    assert {"demo", "cpu", "resnet34"} <= set(names)
    for name in names:
        cfg = load_config(root / "tgs/resources/configs" / f"{name}.yaml")
        assert cfg.name == name  # run folders and submissions are named after it
        validate_config(cfg)  # every name in it resolves


def test_overrides_anywhere_on_the_command_line(capsys):
    """KEY=VALUE before, between and after options, as a user types them; anything else
    stray is refused, and so are overrides to a command that takes none."""
    from tgs.cli.main import main, parse_args

    args = parse_args(["run", "seed=3", "--config", "configs/demo.yaml", "--jobs", "2", "lr=0.1"])
    assert args.overrides == ["seed=3", "lr=0.1"]
    assert (args.config, args.jobs) == ("configs/demo.yaml", 2)
    assert main(["config", "seed=3", "--config", "configs/demo.yaml", "--get", "seed"]) == 0
    assert capsys.readouterr().out.strip() == "3"
    for argv in (
        ["config", "seed=3", "--config", "c.yaml", "bogus"],
        ["config", "--bogus=1"],
        ["folds", "--data", "d", "--out", "f.csv", "seed=3"],
    ):
        with pytest.raises(SystemExit) as e:
            parse_args(argv)
        assert e.value.code == 2
    assert "unrecognized arguments: bogus" in capsys.readouterr().err


def test_config_by_shipped_name(tmp_path, monkeypatch):
    """`--config cpu` finds the config shipped in the package from any folder; a path still
    works; an unknown name lists the shipped ones."""
    from tgs.core.errors import ConfigError
    from tgs.resources import CONFIGS_DIR, shipped_configs

    monkeypatch.chdir(tmp_path)
    assert {"cpu", "demo", "resnet34"} <= set(shipped_configs())
    by_name = load_config("cpu")
    assert by_name == load_config(CONFIGS_DIR / "cpu.yaml") == load_config("configs/cpu.yaml")
    assert by_name.name == "cpu"
    own = tmp_path / "cpu.yaml"  # a file of the user's wins over the shipped name
    own.write_text("name: mine\n")
    assert load_config("cpu.yaml").name == "mine"
    with pytest.raises(ConfigError, match=r"config file not found: cpux \(shipped configs: .*demo"):
        load_config("cpux")


def test_key_groups_are_declared_on_the_fields():
    from tgs.core.config import config_keys

    assert set(config_keys("planned")) == {
        "epochs",
        "stage2_epochs",
        "warmup_epochs",
        "cycle_epochs",
    }
    assert {"threads", "jobs", "device"} <= set(config_keys("runtime"))
    assert "model" not in config_keys("runtime") and "encoder" in config_keys(SMP_ONLY)
    with pytest.raises(ConfigError, match="groups: smp_only, planned, runtime"):
        config_keys("runtimes")
