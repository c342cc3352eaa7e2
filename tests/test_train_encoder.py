"""End to end through the Hydra compose API: fine-tune an encoder on shape crops, then
export it from the fine-tuned checkpoint; extraction and preview runs on a tiny folder."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from visdet.config.validate import ConfigError
from visdet.export.tool import run_export
from visdet.features.tool import run_encoder_tool
from visdet.models.encoders import GeneralEncoder
from visdet.models.post_encoder import spatial_point
from visdet.runs.train_encoder import train_encoder

CONF = Path(__file__).parents[1] / "conf"


def compose_cfg(name, overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


def tiny_train_cfg(tmp_path, *extra):
    return compose_cfg(
        "train_encoder",
        [
            f"paths.output_dir={tmp_path / 'run'}",
            f"paths.data_dir={tmp_path / 'data'}",
            "encoder.input_shape=[3,32,32]",
            "encoder.stage=c3",
            "data.train.num_train=12",
            "data.train.num_val=6",
            "data.train.shapes_image_size=64",
            "data.batch_size=8",
            "data.num_workers=0",
            "trainer.max_epochs=2",
            "trainer.accelerator=cpu",
            "trainer.log_every_n_steps=1",
            "sched.warmup_steps=2",
            "~callbacks.progress_bar",
            *extra,
        ],
    )


def test_train_encoder_then_export_from_checkpoint(tmp_path):
    metrics = train_encoder(tiny_train_cfg(tmp_path))
    assert 0.0 <= metrics["val/acc"] <= 1.0 and metrics["epochs"] == 2
    assert len(metrics["classes"]) == 4
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["best_checkpoint"] == metrics["best_checkpoint"]
    ckpt = metrics["best_checkpoint"]
    assert Path(ckpt).is_file()
    # the fine-tuned backbone becomes the exported encoder
    out = tmp_path / "export"
    cfg = compose_cfg(
        "export",
        [
            f"paths.output_dir={out}",
            "encoder.input_shape=[3,32,32]",
            "encoder.stage=c3",
            f"encoder.init_from={ckpt}",
            "export.backends=[torchscript]",
        ],
    )
    run_export(cfg)
    state = torch.load(ckpt, weights_only=False)["state_dict"]
    enc = GeneralEncoder(depth=18, stage="c3", input_shape=(3, 32, 32), init_from=ckpt)
    key = "encoder.backbone.layer1.0.conv1.weight"
    torch.testing.assert_close(enc.backbone.layer1[0].conv1.weight, state[key])
    assert (out / "encoder.pt").is_file() and (out / "encoder.torchscript.json").is_file()


def test_train_encoder_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="model.colour: unknown key"):
        train_encoder(tiny_train_cfg(tmp_path, "+model.colour=red"))


def make_folder(tmp_path):
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, size in [("a.png", (40, 30)), ("sub/b.png", (64, 48)), ("c.jpg", (32, 32))]:
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(
            root / name
        )
    return root


def extract_cfg(tmp_path, *extra):
    return compose_cfg(
        "extract_features",
        [
            f"paths.output_dir={tmp_path / 'out'}",
            f"extract.images={tmp_path / 'images'}",
            "encoder.input_shape=[3,32,32]",
            "encoder.stage=c3",
            "extract.batch_size=2",
            "extract.progress=false",
            *extra,
        ],
    )


@pytest.mark.parametrize("fmt", ["npy", "pt"])
def test_extract_features_and_points(tmp_path, fmt):
    root = make_folder(tmp_path)
    (tmp_path / "points.csv").write_text(
        "image,x,y,point_id\nsub/b.png,10,20,p1\na.png,39,0,p2\nsub/b.png,63.5,47,p3\n"
    )
    summary = run_encoder_tool(
        extract_cfg(
            tmp_path, f"extract.points_csv={tmp_path / 'points.csv'}", f"extract.format={fmt}"
        ),
        "extract",
    )
    out = tmp_path / "out"
    load = np.load if fmt == "npy" else (lambda p: torch.load(p).numpy())
    features, points = load(out / f"features.{fmt}"), load(out / f"point_features.{fmt}")
    assert summary["images"] == 3 and features.shape == (3, 128) and points.shape == (3, 128)
    index = (out / "index.csv").read_text().splitlines()
    assert index == [
        "row,image,height,width",
        "0,a.png,30,40",
        "1,c.jpg,32,32",
        "2,sub/b.png,48,64",
    ]
    point_index = (out / "point_index.csv").read_text().splitlines()
    assert [line.split(",")[1:3] for line in point_index[1:]] == [
        ["a.png", "p2"],
        ["sub/b.png", "p1"],
        ["sub/b.png", "p3"],
    ]
    # independent recomputation for one image and its points (original-pixel coordinates)
    torch.manual_seed(0)
    enc = GeneralEncoder(depth=18, stage="c3", input_shape=(3, 32, 32)).eval()
    img = Image.open(root / "sub/b.png").convert("RGB").resize((32, 32), Image.Resampling.BILINEAR)
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float()[None] / 255
    with torch.no_grad():
        fmap = enc(x)
        vec = fmap.mean((2, 3))[0]
        pts = spatial_point(
            fmap.expand(2, -1, -1, -1),
            torch.tensor([[10.0, 20.0], [63.5, 47.0]]),
            48,
            64,
            "bilinear",
        )
    np.testing.assert_allclose(features[2], vec.numpy(), atol=1e-5)
    np.testing.assert_allclose(points[1:], pts.numpy(), atol=1e-5)


def test_extract_errors(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "bad.csv").write_text("image,x\na.png,1\n")
    with pytest.raises(ValueError, match="missing \\['y'\\]"):
        run_encoder_tool(
            extract_cfg(tmp_path, f"extract.points_csv={tmp_path / 'bad.csv'}"), "extract"
        )
    (tmp_path / "unknown.csv").write_text("image,x,y\nnope.png,1,2\n")
    with pytest.raises(ValueError, match="unknown.csv:2: image 'nope.png'"):
        run_encoder_tool(
            extract_cfg(tmp_path, f"extract.points_csv={tmp_path / 'unknown.csv'}"), "extract"
        )
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        run_encoder_tool(extract_cfg(tmp_path, f"extract.images={tmp_path / 'missing'}"), "extract")
    with pytest.raises(ValueError, match="extract.format"):
        run_encoder_tool(extract_cfg(tmp_path, "extract.format=csv"), "extract")
    assert not (tmp_path / "out").exists()


def test_preview_features_png(tmp_path):
    root = make_folder(tmp_path)
    cfg = compose_cfg(
        "preview_features",
        [
            f"paths.output_dir={tmp_path / 'out'}",
            f"preview.image={root / 'a.png'}",
            "encoder.input_shape=[3,32,32]",
            "preview.num_channels=8",
        ],
    )
    path = run_encoder_tool(cfg, "preview")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 100


def test_points_without_id_are_named_by_line(tmp_path):
    from visdet.features.extract import read_points

    path = tmp_path / "p.csv"
    path.write_text("image,x,y,point_id\na.png,1,2,\na.png,3,4,p9\nb.png,5,6,\n")
    points = read_points(path, {"a.png", "b.png"})
    assert points == {
        "a.png": [("line2", 1.0, 2.0), ("p9", 3.0, 4.0)],
        "b.png": [("line4", 5.0, 6.0)],
    }
    path.write_text("image,x,y\na.png,1,nan\n")
    with pytest.raises(ValueError, match="p.csv:2: x and y must be finite"):
        read_points(path, {"a.png"})
