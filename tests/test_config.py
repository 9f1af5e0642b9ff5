from pathlib import Path

import pytest

from tgs.config import Config, config_from_dict, dump_config, load_config
from tgs.errors import ConfigError


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
    with pytest.raises(ConfigError, match="expected int"):
        load_config(None, ["epochs=many"])
    with pytest.raises(ConfigError, match="not key=value"):
        load_config(None, ["epochs"])
    with pytest.raises(ConfigError, match="not found"):
        load_config("nope.yaml")
    assert load_config(None) == Config()


def test_shipped_configs_load():
    root = Path(__file__).resolve().parents[1]
    from tgs.train import validate_config

    names = sorted(p.stem for p in (root / "configs").glob("*.yaml"))
    assert {"demo", "cpu", "resnet34"} <= set(names)
    for name in names:
        cfg = load_config(root / "configs" / f"{name}.yaml")
        assert cfg.name == name  # run folders and submissions are named after it
        validate_config(cfg)  # every name in it resolves
