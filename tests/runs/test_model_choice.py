"""``model=<preset>`` on the eval and predict command lines: a group choice whose name the
tools read back."""

import pytest
from hydra import compose, initialize_config_module

from visdet.runs.model_choice import chosen_preset, tool_settings


@pytest.mark.parametrize("tool", ["eval", "predict"])
def test_model_choice_is_read_back_and_left_out_of_the_settings(tool):
    with initialize_config_module(config_module="visdet.conf", version_base="1.3"):
        chosen = compose(tool, ["model=faster_rcnn_r50_fpn", "paths.output_dir=/x"], True)
        plain = compose(tool, ["paths.output_dir=/x"], True)
    assert chosen_preset(chosen) == "faster_rcnn_r50_fpn"
    assert chosen.backbone.depth == 50  # the preset was composed in ...
    assert not {"model", "backbone", "neck"} & set(tool_settings(chosen))  # ... and left out
    assert chosen_preset(plain) is None and "ckpt" in tool_settings(plain)
