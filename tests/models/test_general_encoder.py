"""GeneralEncoder: shapes at any resolution, normalisation inside, weights from checkpoints."""

import pytest
import torch

from visdet.models import ResNet, faster_rcnn_resnet_fpn
from visdet.models.encoders import GeneralEncoder


@pytest.mark.parametrize("stage", ["c2", "c3", "c4", "c5"])
def test_output_shape_matches_forward(stage):
    torch.manual_seed(0)
    enc = GeneralEncoder(depth=18, stage=stage).eval()
    for h, w in [(224, 224), (1, 1), (33, 47), (64, 31), (97, 128)]:
        with torch.no_grad():
            out = enc(torch.rand(2, 3, h, w))
        assert tuple(out.shape[1:]) == enc.output_shape((3, h, w)), (stage, h, w)
    assert enc.output_shape() == enc.output_shape((3, 224, 224))


def test_default_is_resnet18_c5_at_224():
    enc = GeneralEncoder()
    assert enc.input_shape == (3, 224, 224)
    assert enc.output_shape() == (512, 7, 7)
    assert GeneralEncoder(depth=50).output_shape((3, 320, 256)) == (2048, 10, 8)


def test_normalises_inside_and_matches_backbone():
    torch.manual_seed(0)
    backbone = ResNet(depth=18, out_stages=("c4",)).eval()
    enc = GeneralEncoder(backbone=backbone, stage="c4").eval()
    x = torch.rand(2, 3, 64, 80)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(enc(x), backbone((x - mean) / std)["c4"])


def test_bad_arguments():
    with pytest.raises(ValueError, match="p5"):
        GeneralEncoder(stage="p5")
    with pytest.raises(ValueError, match="does not return stage 'c3'"):
        GeneralEncoder(backbone=ResNet(depth=18, out_stages=("c5",)), stage="c3")
    with pytest.raises(ValueError, match="input_shape"):
        GeneralEncoder(input_shape=(1, 224, 224))
    with pytest.raises(ValueError, match="input_shape"):
        GeneralEncoder(input_shape=(3, 0, 224))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        GeneralEncoder()(torch.rand(3, 32, 32))
    with pytest.raises(TypeError, match="does not implement the backbone contract"):
        GeneralEncoder(backbone=torch.nn.Identity())


def test_init_from_detector_checkpoint(tmp_path):
    torch.manual_seed(1)
    detector = faster_rcnn_resnet_fpn(num_classes=3, depth=18, norm="frozen_bn")
    # a Lightning checkpoint of a DetectorModule keeps the detector under "detector."
    state = {f"detector.{k}": v for k, v in detector.state_dict().items()}
    path = tmp_path / "det.ckpt"
    torch.save({"state_dict": state, "epoch": 3}, path)
    enc = GeneralEncoder(depth=18, stage="c4", init_from=str(path)).eval()
    det_state = detector.backbone.state_dict()
    assert not any(k.startswith("layer4.") for k in enc.backbone.state_dict())  # dropped
    for name, tensor in enc.backbone.state_dict().items():
        if not name.endswith("num_batches_tracked"):  # FrozenBN keeps no counter
            torch.testing.assert_close(tensor, det_state[name], msg=name)
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        expected = detector.backbone((x - enc.mean) / enc.std)["c4"]
        torch.testing.assert_close(enc(x), expected)


def test_init_from_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="encoder.init_from: weights file not found"):
        GeneralEncoder(init_from=str(tmp_path / "missing.ckpt"))
    torch.save({"state_dict": {"head.weight": torch.zeros(1)}}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="no backbone weights"):
        GeneralEncoder(init_from=str(tmp_path / "other.ckpt"))
    r50 = ResNet(depth=50)
    torch.save({f"backbone.{k}": v for k, v in r50.state_dict().items()}, tmp_path / "r50.pt")
    with pytest.raises(ValueError, match=r"does not match this model .*layer1.0.conv1.weight"):
        GeneralEncoder(depth=18, init_from=str(tmp_path / "r50.pt"))


def test_layers_after_the_stage_are_dropped():
    enc = GeneralEncoder(depth=18, stage="c3")
    names = {n.split(".")[1] for n, _ in enc.named_parameters()}
    assert names == {"conv1", "bn1", "layer1", "layer2"}
    full = sum(p.numel() for p in ResNet(depth=18).parameters())
    assert sum(p.numel() for p in enc.parameters()) < full / 4
