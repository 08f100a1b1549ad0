from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from paperzoo_shared.config import ConfigError, config_hash, dump_config, load_config, to_dict


@dataclass
class Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    milestones: list[int] = field(default_factory=lambda: [100])


@dataclass
class Model:
    name: Literal["edsr", "rcan"] = "edsr"
    width: int = 64
    teacher: str | None = None


@dataclass
class Experiment:
    seed: int = 0
    model: Model = field(default_factory=Model)
    optim: Optim = field(default_factory=Optim)
    tags: dict[str, str] = field(default_factory=dict)
    use_ema: bool = False

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ValueError("seed must be >= 0")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_without_file():
    cfg = load_config(Experiment)
    assert cfg == Experiment()


def test_base_inheritance_and_nested_merge(tmp_path):
    write(tmp_path / "base.yaml", "seed: 1\nmodel: {name: rcan, width: 32}\noptim: {lr: 0.01}\n")
    child = write(tmp_path / "sub" / "child.yaml", "base: ../base.yaml\nmodel: {width: 16}\n")
    cfg = load_config(Experiment, child)
    assert cfg.seed == 1
    assert cfg.model == Model(name="rcan", width=16)  # width from the child, name from the base
    assert cfg.optim.lr == 0.01


def test_multiple_bases_merge_left_to_right(tmp_path):
    write(tmp_path / "a.yaml", "seed: 1\nuse_ema: true\n")
    write(tmp_path / "b.yaml", "seed: 2\n")
    child = write(tmp_path / "c.yaml", "base: [a.yaml, b.yaml]\n")
    cfg = load_config(Experiment, child)
    assert (cfg.seed, cfg.use_ema) == (2, True)


def test_dotted_overrides_with_yaml_values(tmp_path):
    path = write(tmp_path / "x.yaml", "optim: {lr: 0.1}\n")
    cfg = load_config(
        Experiment,
        path,
        overrides=["optim.lr=1e-4", "optim.milestones=[5, 10]", "model.teacher=null", "tags.a=b"],
    )
    assert cfg.optim.lr == pytest.approx(1e-4)
    assert cfg.optim.milestones == [5, 10]
    assert cfg.model.teacher is None
    assert cfg.tags == {"a": "b"}


def test_int_is_accepted_for_float_and_list_for_tuple():
    cfg = load_config(Experiment, overrides=["optim.lr=1", "optim.betas=[0.5, 0.6]"])
    assert isinstance(cfg.optim.lr, float)
    assert cfg.optim.betas == (0.5, 0.6)


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path / "typo.yaml", "optim: {lrr: 0.1}\n")
    with pytest.raises(ConfigError) as info:
        load_config(Experiment, path)
    message = str(info.value)
    assert "optim.lrr" in message and str(path) in message and "lr" in message


def test_unknown_key_from_a_base_names_the_base(tmp_path):
    base = write(tmp_path / "base.yaml", "modle: {width: 3}\n")
    child = write(tmp_path / "child.yaml", "base: base.yaml\nseed: 3\n")
    with pytest.raises(ConfigError, match=r"'modle'.*base\.yaml"):
        load_config(Experiment, child)
    assert base.exists()


def test_wrong_type_names_key_and_file(tmp_path):
    path = write(tmp_path / "bad.yaml", "model: {width: wide}\n")
    with pytest.raises(ConfigError, match=r"'model\.width' expects an integer.*bad\.yaml"):
        load_config(Experiment, path)


def test_bool_is_not_an_int_and_literal_is_checked():
    with pytest.raises(ConfigError, match="model.width"):
        load_config(Experiment, overrides=["model.width=true"])
    with pytest.raises(ConfigError, match=r"'model\.name' expects one of 'edsr', 'rcan'"):
        load_config(Experiment, overrides=["model.name=swinir"])


def test_wrong_type_from_override_names_the_override():
    with pytest.raises(ConfigError, match=r"--set use_ema=3"):
        load_config(Experiment, overrides=["use_ema=3"])


def test_tuple_length_is_checked():
    with pytest.raises(ConfigError, match="exactly 2"):
        load_config(Experiment, overrides=["optim.betas=[0.9]"])


def test_post_init_validation_becomes_config_error():
    with pytest.raises(ConfigError, match="seed must be >= 0"):
        load_config(Experiment, overrides=["seed=-1"])


def test_missing_file_and_cycle(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Experiment, tmp_path / "nope.yaml")
    write(tmp_path / "a.yaml", "base: b.yaml\n")
    write(tmp_path / "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(Experiment, tmp_path / "a.yaml")


def test_malformed_override():
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(Experiment, overrides=["seed"])


def test_hash_is_stable_and_sensitive(tmp_path):
    a, b = Experiment(), Experiment()
    assert config_hash(a) == config_hash(b)
    b.optim.lr = 0.5
    assert config_hash(a) != config_hash(b)
    dump_config(b, tmp_path / "out.yaml")
    assert load_config(Experiment, tmp_path / "out.yaml") == b
    assert to_dict(b)["optim"]["betas"] == [0.9, 0.999]
