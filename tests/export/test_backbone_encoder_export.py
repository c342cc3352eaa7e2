"""The new backbones as exported encoders (``visdet export encoder=<name>``): TorchScript
files verified against eager at two batch sizes and two resolutions (multiples of a ViT's
patch), and the runtime spec's declared shapes: ViT-S/16 at 3x256x256 gives [384, 16, 16].
AOTInductor compiles take a minute or more each: make test-full."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from visdet.export import read_spec
from visdet.export.tool import run_export

CONF = Path(__file__).parents[2] / "conf"


def cfg(tmp_path, encoder, *extra):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(
            config_name="export",
            overrides=[f"encoder={encoder}", f"paths.output_dir={tmp_path}",
                       f"export.output_dir={tmp_path}", *extra],
        )  # fmt: skip


def test_vit_s16_encoder_spec_declares_384x16x16_and_the_file_matches_eager(tmp_path):
    (result,) = run_export(cfg(tmp_path, "vit_s16", "export.backends=[torchscript]"))
    assert result.dynamic_hw and result.max_abs_diff <= 1e-4
    assert {(h, w) for _, h, w, _ in result.checks} == {(256, 256), (288, 320)}
    spec = read_spec(tmp_path / "encoder.torchscript.json")
    assert spec.inputs[0].shape == (3, 256, 256)
    assert spec.outputs[0].shape == (384, 16, 16)
    assert spec.model_id == "vit_s16_encoder" and spec.display_name == "ViT-S/16 encoder"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("encoder", "shape"),
    [("convnext_tiny", (768, 7, 7)), ("swin_t", (768, 7, 7)), ("vit_b16", (768, 14, 14)),
     ("mobilenet_v3_large", (960, 7, 7)), ("vit_s16", (384, 16, 16))],
)  # fmt: skip
def test_every_new_encoder_exports_to_both_backends(tmp_path, encoder, shape):
    results = run_export(cfg(tmp_path, encoder))
    assert [r.backend for r in results] == ["torchscript", "aotinductor"]
    for r in results:
        assert r.max_abs_diff <= 1e-4, (r.backend, r.max_abs_diff)
        assert read_spec(r.spec).outputs[0].shape == shape
