"""``visdet config schema``: the written JSON Schemas accept the repository's own experiment
and group files and reject a misspelt key, a wrong type and an unknown group option; the
yaml-language-server header goes where Hydra still reads ``# @package``."""

import dataclasses
import enum
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import jsonschema
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from visdet.cli import main as visdet_main
from visdet.config.schema import config_dir, package_of
from visdet.config.schema_files import add_header, check_file, load_schemas, messages
from visdet.config.signature_schema import annotation_schema, docstring_args, target_schema

CONF = Path(__file__).parents[2] / "conf"
EXPERIMENTS = sorted((CONF / "experiment").glob("*.yaml"))


@pytest.fixture(scope="module")
def schema_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("schemas")
    with pytest.raises(SystemExit) as exit_info:
        visdet_main(["config", "schema", "--out", str(out)])
    assert exit_info.value.code == 0
    return out


@pytest.fixture(scope="module")
def schemas(schema_dir):
    return load_schemas(schema_dir)


def errors(schema, data):
    return messages(jsonschema.Draft7Validator(schema), data)


def load(path):
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def test_one_valid_draft7_schema_per_group_and_an_index(schema_dir, schemas):
    for group in ("data", "model", "backbone", "neck", "aug", "optim", "sched", "trainer"):
        assert group in schemas
    for group in ("callbacks", "logger", "paths", "hydra", "experiment"):
        assert group in schemas
    for schema in schemas.values():
        jsonschema.Draft7Validator.check_schema(schema)
    index = (schema_dir / "README.md").read_text()
    assert "| optim.schema.json |" in index and "param_groups/discriminative" in index


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_experiment_file_validates(schemas, path):
    assert errors(schemas["experiment"], load(path)) == []


def test_every_group_file_validates_at_its_package(schemas):
    checked = 0
    for path in sorted(CONF.rglob("*.yaml")):
        if path.parent != CONF:
            assert check_file(path, schemas, config_dir()) == [], path
            checked += 1
    assert checked > 100


@pytest.mark.parametrize(
    "group,option",
    [("optim", "sgd"), ("backbone", "resnet18"), ("neck", "fpn"), ("data", "coco"),
     ("aug", "mosaic"), ("callbacks", "default"), ("trainer", "default"), ("model", "fcos")],
)  # fmt: skip
def test_group_option_files_validate_against_their_group_schema(schemas, group, option):
    assert package_of(CONF / group / f"{option}.yaml", group) == (group,)
    assert errors(schemas[group], load(CONF / group / f"{option}.yaml")) == []


def test_a_misspelt_key_is_rejected_naming_it_and_the_allowed_ones(schemas, tmp_path):
    (message,) = errors(schemas["experiment"], {"optim": {"lrr": 0.1}})
    assert message.startswith("optim.lrr: unknown key; allowed: ") and " lr," in message
    (message,) = errors(schemas["optim"], {**load(CONF / "optim/sgd.yaml"), "momentun": 0.9})
    assert message.startswith("momentun: unknown key for this _target_; allowed: ")
    typos = {
        "paths.data_dri": {"paths": {"data_dri": "x"}},
        "sead": {"sead": 1},
        "model.detector.anchor_sizez": {"model": {"detector": {"anchor_sizez": []}}},
        "callbacks.lr_monitor.interval": {"callbacks": {"lr_monitor": {"interval": "step"}}},
        "aug.mosaic.pp": {"aug": {"mosaic": {"pp": 1.0}}},
    }
    for key, typo in typos.items():
        (message,) = errors(schemas["experiment"], typo)
        assert message.startswith(f"{key}: unknown key"), message
    # in a file: the repository's experiment with one key misspelt
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (CONF / "experiment/shapes_r50.yaml").read_text().replace("val_size", "val_sise")
    )
    (line,) = check_file(bad, schemas)
    assert line == f"{bad}: " + line.split(": ", 1)[1] and "aug.val_sise: unknown key" in line


def test_a_wrong_type_is_rejected(schemas):
    cases = {
        "data.batch_size: expected integer or an interpolation ${...}, got 'eight'": {
            "data": {"batch_size": "eight"}
        },
        "backbone.depth: expected integer or an interpolation ${...}, got [1]": {
            "backbone": {"depth": [1]}
        },
        "optim.lr: expected number or an interpolation ${...}, got 'fast'": {
            "optim": {"lr": "fast"}
        },
        "aug.mosaic: expected a mapping or null or an interpolation ${...}, got 3": {
            "aug": {"mosaic": 3}
        },
    }
    for expected, data in cases.items():
        assert errors(schemas["experiment"], data) == [expected]
    assert errors(schemas["experiment"], {"test": "yes"}) != []  # train.yaml's bool
    # a key given as a string in one file and as a _target_ mapping in another keeps both
    assert errors(schemas["experiment"], {"trainer": {"strategy": "ddp"}}) == []
    assert errors(schemas["experiment"], {"trainer": {"strategy": 3}}) != []


def test_interpolations_missing_values_and_null_groups_are_accepted(schemas):
    data = {
        "optim": {"lr": "${oc.env:LR,0.01}", "momentum": "???"},
        "data": {"batch_size": "${oc.decode:${oc.env:BS,8}}"},
        "aug": {"mosaic": None},
        "tags": ["a", "b"],
    }
    assert errors(schemas["experiment"], data) == []


def test_an_unknown_group_or_option_in_the_defaults_list_is_rejected(schemas):
    ok = {"defaults": [{"override /model": "fcos_r18_fpn"}, {"override /hydra/sweeper": "basic"}]}
    assert errors(schemas["experiment"], ok) == []
    (message,) = errors(schemas["experiment"], {"defaults": [{"override /model": "fatser_rcnn"}]})
    assert message.startswith("defaults[0]['override /model']: expected one of atss, ")
    assert "faster_rcnn_r18_fpn" in message and message.endswith("got 'fatser_rcnn'")
    (message,) = errors(schemas["experiment"], {"defaults": [{"override /modle": "fcos"}]})
    assert "'override /modle' names no config group" in message


def test_each_target_has_its_own_keys(schemas):
    fcos = {"_target_": "visdet.models.detectors.fcos", "rpn_num_convs": 1}
    (message,) = errors(schemas["experiment"], {"model": {"detector": fcos}})
    assert message.startswith("model.detector.rpn_num_convs: unknown key for this _target_")
    frcnn = {"_target_": "visdet.models.detectors.faster_rcnn", "rpn_num_convs": 1}
    assert errors(schemas["experiment"], {"model": {"detector": frcnn}}) == []


def test_properties_carry_types_defaults_and_docstring_text(schemas):
    backbone = schemas["backbone"]["properties"]
    assert (
        backbone["depth"]["default"] == 50
        and "18, 34, 50 or 101" in backbone["depth"]["description"]
    )
    lr = schemas["optim"]["properties"]["lr"]
    assert "learning rate" in lr["description"]
    model = schemas["model"]["properties"]
    assert "weights for the whole detector" in model["init_from"]["description"]  # YAML comment
    assert "optimizer" not in model  # visdet.runs passes it (validate.INJECTED)
    assert schemas["model"]["additionalProperties"] is False
    assert schemas["callbacks"]["additionalProperties"] == {"type": ["object", "null"]}


def test_annotations_map_to_json_types():
    class Color(enum.Enum):
        red = 1

    @dataclasses.dataclass
    class Box:
        size: int = 3

    ref = {"$ref": "#/definitions/interpolation"}
    assert annotation_schema(int) == {"type": "integer"}
    assert annotation_schema(float | None) == {"anyOf": [{"type": "number"}, {"type": "null"}]}
    assert annotation_schema(Literal["a", "b"]) == {"enum": ["a", "b"]}
    assert annotation_schema(Color) == {"enum": ["red"]}
    assert annotation_schema(Sequence[int]) == {
        "type": "array",
        "items": {"anyOf": [{"type": "integer"}, ref]},
    }
    assert annotation_schema(dict[str, int]) == {"type": "object"}
    assert annotation_schema(Box)["properties"]["size"]["default"] == 3
    assert annotation_schema(float | Path) == {"anyOf": [{"type": "number"}, {"type": "string"}]}
    assert annotation_schema(Sequence) == {"type": "array"}
    assert annotation_schema(object) == {}


def test_docstring_args_and_kwargs_forwarding():
    doc = """Summary.

    Args:
        depth: 18 or 50,
            continued here.
        lr (float): learning rate (default: 1e-3)

    Returns:
        nothing
    """
    assert docstring_args(doc) == {
        "depth": "18 or 50, continued here.",
        "lr": "learning rate (default: 1e-3)",
    }
    mask = target_schema("visdet.models.detectors.mask_rcnn")  # **faster_rcnn_settings
    assert not mask.open and "rpn_num_convs" in mask.properties and "mask_layers" in mask.properties
    assert (
        target_schema("visdet.lightning.one_cycle.one_cycle").properties["pct_start"]["default"]
        == 0.25
    )
    with pytest.raises(ValueError, match=r"_target_ 'visdet.nope.Thing': cannot import it"):
        target_schema("visdet.nope.Thing")


def test_header_goes_under_the_package_line_and_hydra_still_reads_it(schema_dir, tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    experiment = conf / "experiment" / "shapes_r50.yaml"
    text = experiment.read_text()
    if "yaml-language-server" in text:  # the repository's file may carry one: start without
        experiment.write_text(
            "\n".join(x for x in text.splitlines() if "yaml-language-server" not in x) + "\n"
        )
    line = add_header(experiment, schema_dir / "experiment.schema.json")
    add_header(experiment, schema_dir / "experiment.schema.json")  # replaces, never duplicates
    lines = experiment.read_text().splitlines()
    assert lines[0] == "# @package _global_" and lines[1] == line
    assert sum("yaml-language-server" in x for x in lines) == 1
    target = (experiment.parent / line.split("$schema=")[1]).resolve()
    assert target == (schema_dir / "experiment.schema.json").resolve()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=shapes_r50"])
    assert cfg.trainer.max_epochs == 24 and "experiment" not in cfg  # still _global_


def test_header_and_check_from_the_command_line(tmp_path, capsys):
    mine = tmp_path / "mine.yaml"
    mine.write_text("# @package _global_\noptim:\n  lrr: 0.1\ntrainer:\n  max_epochs: lots\n")
    with pytest.raises(SystemExit) as exit_info:
        visdet_main(["config", "schema", f"out={tmp_path / 's'}", "--header", str(mine)])
    assert exit_info.value.code == 0
    assert (
        mine.read_text().splitlines()[1]
        == "# yaml-language-server: $schema=s/experiment.schema.json"
    )
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        visdet_main(["config", "schema", "--check", str(mine), str(EXPERIMENTS[0])])
    assert exit_info.value.code == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{mine}: optim.lrr: unknown key; allowed: ")
    expected = "trainer.max_epochs: expected integer or null or an interpolation ${...}"
    assert out[1] == f"{mine}: {expected}, got 'lots'"
    assert out[2] == "checked 2 files: 2 problems"
    assert json.loads((tmp_path / "s" / "optim.schema.json").read_text())["title"]
