"""Export a tiny encoder to both backends, load the files in a fresh process through their
spec and compare with the eager model at two batch sizes and two resolutions."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from visdet.config.validate import ConfigError
from visdet.export import ExportVerificationError, export_encoder, load_spec, read_spec
from visdet.export import exporter as exporter_module
from visdet.export.spec import spec_to_dict, write_spec
from visdet.export.tool import run_export
from visdet.models.encoders import GeneralEncoder
from visdet.models.post_encoder import global_avg_pool, spatial_point

HERE = Path(__file__).parent
CONF = HERE.parents[1] / "conf"


def tiny_encoder(stage="c3", size=32):
    torch.manual_seed(0)
    return GeneralEncoder(depth=18, stage=stage, input_shape=(3, size, size)).eval()


def run_fresh(spec: Path, cases: list[dict], tmp_path: Path) -> list[dict]:
    inputs, outputs = tmp_path / "inputs.pt", tmp_path / "outputs.pt"
    torch.save(cases, inputs)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [
            sys.executable,
            str(HERE / "run_spec_in_fresh_process.py"),
            str(spec),
            str(inputs),
            str(outputs),
        ],
        check=True,
        env=env,
        timeout=300,
    )
    return torch.load(outputs)


def make_cases(sizes, batches, with_point=False):
    g = torch.Generator().manual_seed(7)
    cases = []
    for h, w in sizes:
        for b in batches:
            case = {"image": torch.rand(b, 3, h, w, generator=g)}
            if with_point:
                case["point"] = torch.rand(b, 2, generator=g) * torch.tensor([w - 1.0, h - 1.0])
            cases.append(case)
    return cases


def _export(out, backends):
    """spatial_point (bilinear) baked in, dynamic batch and H/W."""
    enc = tiny_encoder()
    results = export_encoder(
        enc, out, name="tiny", model_id="tiny", display_name="Tiny",
        post_encoder=[{"module": "spatial_point", "interpolation": "bilinear"}],
        bake_post_encoder=True, max_batch=8, dynamic_hw=(32, 128), backends=backends,
    )  # fmt: skip
    return enc, out, results


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """TorchScript only (the AOTInductor compile takes most of a minute: slow tests)."""
    return _export(tmp_path_factory.mktemp("export"), ["torchscript"])


@pytest.fixture(scope="module")
def exported_both(tmp_path_factory):
    return _export(tmp_path_factory.mktemp("export_both"), ["torchscript", "aotinductor"])


def test_torchscript_export_writes_file_spec_and_checks(exported):
    _, out, results = exported
    assert sorted(p.name for p in out.iterdir()) == ["tiny.pt", "tiny.torchscript.json"]
    (r,) = results
    assert r.backend == "torchscript" and r.dynamic_hw and r.max_abs_diff <= 1e-4
    assert {(b, h, w) for b, h, w, _ in r.checks} == {
        (1, 32, 32), (3, 32, 32), (1, 64, 96), (3, 64, 96)
    }  # fmt: skip
    spec = read_spec(out / "tiny.torchscript.json")
    assert spec.weights_path == "tiny.pt" and spec.backend == "torchscript"
    assert [s.name for s in spec.inputs] == ["image", "point"]


@pytest.mark.slow
def test_export_writes_files_specs_and_checks(exported_both):
    enc, out, results = exported_both
    assert sorted(p.name for p in out.iterdir()) == [
        "tiny.aotinductor.json", "tiny.pt", "tiny.pt2", "tiny.torchscript.json"
    ]  # fmt: skip
    for r in results:
        assert r.dynamic_hw
        assert {(b, h, w) for b, h, w, _ in r.checks} == {
            (1, 32, 32),
            (3, 32, 32),
            (1, 64, 96),
            (3, 64, 96),
        }
        assert r.max_abs_diff <= 1e-4
    spec = read_spec(out / "tiny.aotinductor.json")
    assert spec.weights_path == "tiny.pt2" and spec.backend == "aotinductor"
    assert [s.name for s in spec.inputs] == ["image", "point"]
    assert spec.inputs[0].shape == (3, 32, 32) and spec.inputs[1].shape == (2,)
    assert spec.outputs[0].shape == (128,)  # c3 channels after spatial_point
    assert spec.post_encoder == () and spec.batch_mode.max == 8


@pytest.mark.parametrize(
    "backend", ["torchscript", pytest.param("aotinductor", marks=pytest.mark.slow)]
)
def test_exported_file_matches_eager_in_fresh_process(request, backend, tmp_path):
    fixture = "exported" if backend == "torchscript" else "exported_both"
    enc, out, _ = request.getfixturevalue(fixture)
    cases = make_cases([(32, 32), (48, 80)], [1, 4], with_point=True)
    got = run_fresh(out / f"tiny.{backend}.json", cases, tmp_path)
    for case, result in zip(cases, got):
        image, point = case["image"], case["point"]
        with torch.no_grad():
            expected = spatial_point(enc(image), point, image.shape[2], image.shape[3], "bilinear")
        assert list(result) == ["features"]
        torch.testing.assert_close(result["features"], expected, atol=1e-4, rtol=1e-4)


def test_spec_post_encoder_applied_by_runner(tmp_path):
    """Not baked: the file returns feature maps, the spec lists global_avg_pool and the runner
    applies it; a weights variant is picked by batch size."""
    enc = tiny_encoder(stage="c4")
    export_encoder(
        enc, tmp_path, name="maps", backends=["torchscript"], post_encoder=["global_avg_pool"],
        dynamic_hw=None,
    )  # fmt: skip
    spec = read_spec(tmp_path / "maps.torchscript.json")
    assert spec.outputs[0].shape == (256, 2, 2)
    assert [s.module for s in spec.post_encoder] == ["global_avg_pool"]
    image = torch.rand(2, 3, 40, 56)
    got = load_spec(tmp_path / "maps.torchscript.json")(image)["features"]
    with torch.no_grad():
        torch.testing.assert_close(got, global_avg_pool(enc(image)), atol=1e-5, rtol=1e-5)
    # a variant for batch size 5 is used for batch 5 only (its file is missing here)
    data = spec_to_dict(spec)
    data["weights_variants"] = [{"path": "missing_b5.pt", "batch_size": 5}]
    (tmp_path / "variants.json").write_text(json.dumps(data))
    runner = load_spec(tmp_path / "variants.json")
    assert runner(torch.rand(3, 3, 32, 32))["features"].shape == (3, 256)
    with pytest.raises(FileNotFoundError, match="missing_b5.pt"):
        runner(torch.rand(5, 3, 32, 32))


def test_runner_rejects_bad_input(exported):
    _, out, _ = exported
    runner = load_spec(out / "tiny.torchscript.json")
    with pytest.raises(ValueError, match="batch size 9 not allowed"):
        runner(torch.rand(9, 3, 32, 32), torch.zeros(2))
    with pytest.raises(ValueError, match="needs input 'point'"):
        runner(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        runner(torch.rand(1, 1, 32, 32), torch.zeros(2))
    spec = read_spec(out / "tiny.torchscript.json")
    write_spec(spec, out.parent / "elsewhere.json")  # relative weights path no longer resolves
    with pytest.raises(FileNotFoundError, match="tiny.pt"):
        load_spec(out.parent / "elsewhere.json")


def test_failed_verification_keeps_existing_files(tmp_path, monkeypatch):
    enc = tiny_encoder()
    (tmp_path / "tiny.pt").write_bytes(b"the user's previous export")

    def wrong_loader(path, backend, device="cpu"):
        return lambda image, *rest: torch.zeros(image.shape[0], 128, 4, 4)

    monkeypatch.setattr(exporter_module, "load_backend", wrong_loader)
    with pytest.raises(ExportVerificationError, match="max"):
        export_encoder(enc, tmp_path, name="tiny", backends=["torchscript"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.pt"]
    assert (tmp_path / "tiny.pt").read_bytes() == b"the user's previous export"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"backends": ["onnx"]}, "backends"),
        ({"backends": []}, "backends"),
        ({"dynamic_hw": (64, 128)}, "dynamic_hw"),
        ({"verify_batch_sizes": (2, 2)}, "verify_batch_sizes"),
        ({"max_batch": 2}, "max_batch"),
        ({"post_encoder": ["max_pool"]}, "unknown post-encoder"),
        (
            {"post_encoder": [{"module": "spatial_point", "interpolation": "cubic"}]},
            "interpolation",
        ),
        ({"post_encoder": ["global_avg_pool", "spatial_point"]}, r"step 1 \(spatial_point\)"),
        ({"verify_sizes": [[32, 32], [64, 2048]]}, "outside dynamic_hw"),
    ],
)
def test_export_argument_errors(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        export_encoder(tiny_encoder(), tmp_path, **{"backends": ["torchscript"], **kwargs})
    assert not any(p.suffix in (".pt", ".json") for p in tmp_path.iterdir())


def export_cfg(tmp_path, *extra):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(
            config_name="export",
            overrides=[
                f"paths.output_dir={tmp_path}",
                f"export.output_dir={tmp_path}",
                "encoder.input_shape=[3,32,32]",
                "encoder.stage=c3",
                "export.backends=[torchscript]",
                *extra,
            ],
        )


def test_run_export_from_config(tmp_path):
    results = run_export(export_cfg(tmp_path, "export.post_encoder=[global_avg_pool]"))
    assert [r.backend for r in results] == ["torchscript"]
    report = json.loads((tmp_path / "export_report.json").read_text())
    assert report[0]["spec"] == "encoder.torchscript.json" and len(report[0]["checks"]) == 4
    spec = read_spec(tmp_path / "encoder.torchscript.json")
    assert spec.model_id == "resnet18_encoder" and spec.display_name == "ResNet-18 encoder"


def test_run_export_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="export.colour: unknown key"):
        run_export(export_cfg(tmp_path, "+export.colour=red"))
    with pytest.raises(ConfigError, match="encoder.backbone.depth: expected int"):
        run_export(export_cfg(tmp_path, "encoder.backbone.depth=eighteen"))


def test_verification_cases():
    from visdet.export.exporter import exportable_hw, verification_cases

    assert verification_cases((3, 224, 224), [1, 3], None, (33, 1024)) == [
        (1, 224, 224), (3, 224, 224), (1, 256, 288), (3, 256, 288)
    ]  # fmt: skip
    # near the upper bound the second size goes down instead
    assert verification_cases((3, 1000, 1000), [1, 2], None, (33, 1024))[2:] == [
        (1, 968, 936), (2, 968, 936)
    ]  # fmt: skip
    assert verification_cases((3, 64, 64), [1, 2], None, None) == [(1, 64, 64), (2, 64, 64)]
    # c5 (stride 32): sizes up to 32 give a 1x1 map, which torch.export cannot keep dynamic
    enc = GeneralEncoder(depth=18, stage="c5", input_shape=(3, 224, 224))
    assert exportable_hw(enc, (32, 1024)) == (33, 1024)
    assert exportable_hw(GeneralEncoder(stage="c5", input_shape=(3, 32, 32)), (16, 64)) is None
