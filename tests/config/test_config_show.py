"""``visdet config show``: the composed config with the source of every value. The sources are
checked against the files themselves: the attributed file (at its package) or override sets
exactly that value, and no source merged after it sets the key again."""

from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from visdet.cli import main as visdet_main
from visdet.config.provenance import compose_with_sources, render

CONF = Path(__file__).parents[2] / "conf"
OVERRIDES = ["experiment=shapes_r50", "optim.lr=0.01", "+optim.foo=1", "aug.hflip=0.25"]


@pytest.fixture(scope="module")
def composed():
    return compose_with_sources("train", OVERRIDES)


def leaves(node, path=()):
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from leaves(value, (*path, str(key)))
    else:
        yield path, node


def source_values(source, package):
    """{path: value} that one merged source sets, read from its file or override."""
    if source.startswith("override "):
        (override,) = OverridesParser.create().parse_overrides([source[len("override ") :]])
        content, at = override.value(), tuple(override.key_or_group.split("."))
    else:
        content = OmegaConf.to_container(OmegaConf.load(CONF / source), resolve=False) or {}
        content.pop("defaults", None)
        at = tuple(package.split(".")) if package else ()
    return {(*at, *path): value for path, value in leaves(content)}


def test_known_values_come_from_the_right_source(composed):
    s = composed.sources
    assert s["seed",] == "train.yaml"
    assert s["optim", "lr"] == "override optim.lr=0.01" and composed.config.optim.lr == 0.01
    assert s["optim", "foo"] == "override +optim.foo=1"
    assert s["optim", "momentum"] == "optim/sgd.yaml"
    assert s["aug", "hflip"] == "override aug.hflip=0.25"
    assert s["backbone", "norm"] == "experiment/shapes_r50.yaml"
    assert s["trainer", "max_epochs"] == "experiment/shapes_r50.yaml"
    assert s["trainer", "precision"] == "trainer/gpu.yaml"  # the experiment's override /trainer
    assert s["trainer", "gradient_clip_val"] == "trainer/default.yaml"  # gpu's own default
    assert s["model", "detector", "anchor_sizes"] == "experiment/shapes_r50.yaml"
    assert s["model", "detector", "_target_"] == "model/faster_rcnn.yaml"
    assert s["data", "source", "num_train"] == "data/shapes.yaml"


def test_a_preset_wins_over_the_group_file_it_selects():
    s = compose_with_sources("train", []).sources
    assert s["neck", "out_channels"] == "model/faster_rcnn_r18_fpn.yaml"
    assert s["neck", "in_features"] == "neck/fpn.yaml"
    s = compose_with_sources("train", ["model=fcos_r18_fpn"]).sources
    assert s["model", "detector", "score_thresh"] == "model/fcos_r18_fpn.yaml"
    assert s["model", "detector", "nms_thresh"] == "model/fcos.yaml"
    assert s["neck", "extra_blocks"] == "neck/fpn_p6p7.yaml"


@pytest.mark.parametrize(
    "overrides", [OVERRIDES, [], ["model=retinanet_r18_fpn", "~optim.momentum"]]
)
def test_every_value_is_set_by_its_source_and_by_none_after_it(overrides):
    composed = compose_with_sources("train", overrides)
    order = [source for source, _, _ in composed.merged]
    sets = {source: source_values(source, package) for source, package, _ in composed.merged}
    data = OmegaConf.to_container(composed.config, resolve=False)
    for path, value in leaves(data):
        source = composed.sources[path]
        assert sets[source][path] == value, (path, source)
        later = order[order.index(source) + 1 :]
        assert not any(path in sets[s] for s in later), (path, source)
    assert ("optim", "momentum") not in composed.sources or "~optim.momentum" not in overrides


def test_render_shows_the_tree_sources_and_resolved_interpolations(composed):
    text = render(composed)
    lines = text.splitlines()
    assert lines[0].startswith("# merged in this order")
    assert any(
        x.startswith("#   experiment/shapes_r50.yaml") and "command line" in x for x in lines
    )
    assert "optim:" in lines
    (lr,) = [x for x in lines if x.startswith("  lr: ")]
    assert lr.endswith("# override optim.lr=0.01")
    (classes,) = [x for x in lines if x.strip().startswith("num_classes: ${data.num_classes}")]
    assert classes.startswith("    num_classes:") and classes.endswith(
        "# model/faster_rcnn.yaml  = 4"
    )
    (out,) = [x for x in lines if x.startswith("  output_dir: ")]
    assert "paths/default.yaml  resolved at run time" in out
    assert render(composed, "optim.lr").splitlines()[-1].startswith("optim.lr: 0.01")


def test_command_line_show_and_its_one_line_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        visdet_main(["config", "show", "--select", "optim", "optim.lr=0.5"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "lr: 0.5" in out and "# override optim.lr=0.5" in out and "data:" not in out
    for bad, expected in [
        ("optim.lrr=0.1", "Could not override 'optim.lrr'"),
        ("model=nope", "Could not find 'model/nope'"),
        ("optim.lr=[", "cannot parse override 'optim.lr=['"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            visdet_main(["config", "show", bad])
        assert exit_info.value.code == 1
        err = capsys.readouterr().err
        assert err.startswith("visdet config show: ") and expected in err and err.count("\n") == 1
    with pytest.raises(SystemExit):
        visdet_main(["config", "show", "--select", "optim.nope"])
    assert "optim.nope: no such key" in capsys.readouterr().err


def test_another_app_config_and_a_config_dir(tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text("# @package _global_\nseed: 7\n")
    searchpath = f"hydra.searchpath=[file://{tmp_path}]"
    composed = compose_with_sources("train", ["experiment=mine", searchpath])
    assert composed.config.seed == 7 and composed.sources["seed",] == "experiment/mine.yaml"
    evaluation = compose_with_sources("eval", [])
    assert evaluation.sources["task_name",] == "eval.yaml"
