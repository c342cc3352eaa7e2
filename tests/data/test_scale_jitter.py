"""Large-scale jitter, and Kornia's random resized crop and photometric ops inside
DetectionAugment: boxes checked against the transformed content."""

import pytest
import torch

from visdet.data import DetectionAugment
from visdet.data.scale_jitter import large_scale_jitter


def object_image(h=60, w=80, box=(10, 20, 50, 45)):
    x1, y1, x2, y2 = box
    img = torch.zeros(3, h, w)
    img[:, y1:y2, x1:x2] = 1.0
    return img, {"boxes": torch.tensor([list(map(float, box))]), "labels": torch.tensor([1])}


def content_box(img, threshold=0.5):
    ys, xs = torch.nonzero(img[0] > threshold, as_tuple=True)
    return [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]


def test_factor_one_fits_the_square_and_pads_bottom_right():
    img, tgt = object_image()
    out, t = large_scale_jitter(img, tgt, 40, (1.0, 1.0), fill=0.25)
    assert out.shape == (3, 40, 40)
    assert torch.all(out[:, 30:, :] == 0.25)  # 60x80 scaled by 0.5 -> 30x40, padded below
    assert t["boxes"].tolist() == [[5.0, 10.0, 25.0, 22.5]]
    found = content_box(out)
    assert all(abs(a - b) <= 1 for a, b in zip(found, t["boxes"][0].tolist(), strict=True))


def test_random_factors_and_crops_keep_boxes_on_their_object():
    torch.manual_seed(0)
    kept = 0
    for _ in range(30):
        img, tgt = object_image()
        out, t = large_scale_jitter(img, tgt, 48, (0.3, 3.0), min_box_size=2.0)
        assert out.shape == (3, 48, 48)
        if len(t["boxes"]):
            kept += 1
            found = content_box(out)
            assert all(abs(a - b) <= 1 for a, b in zip(found, t["boxes"][0].tolist(), strict=True))
        else:
            assert (out[0] > 0.5).sum() < 2 * 48  # dropped: (almost) nothing of it in view
    assert kept > 10


def test_augment_jitter_replaces_the_resize_in_training_only():
    aug = DetectionAugment(
        train_sizes=(32,), val_size=30, hflip=0.0, color_jitter=None,
        large_scale_jitter={"scale": [0.5, 1.5]},
    )  # fmt: skip
    img, tgt = object_image()
    out, t = aug([img], [tgt], train=True)
    assert out[0].shape == (3, 32, 32) and t[0]["input_size"] == (32, 32)
    out, t = aug([img], [tgt], train=False)
    assert out[0].shape == (3, 30, 40)


def test_kornia_random_resized_crop_boxes_enclose_the_cropped_object():
    torch.manual_seed(1)
    aug = DetectionAugment(
        train_sizes=(60,), hflip=0.5, color_jitter=None,
        random_resized_crop={"scale": [0.3, 1.0], "p": 1.0}, min_visible=0.2,
    )  # fmt: skip
    seen = 0
    for _ in range(20):
        img, tgt = object_image()
        out, t = aug([img, img.clone()], [tgt, dict(tgt)], train=True)
        for o, tt in zip(out, t, strict=True):
            assert o.shape == (3, 60, 80)
            if len(tt["boxes"]):
                seen += 1
                found = content_box(o)
                assert all(abs(a - b) <= 1.5 for a, b in zip(found, tt["boxes"][0].tolist())), (
                    found, tt["boxes"],
                )  # fmt: skip
    assert seen > 20


def test_photometric_changes_colours_not_boxes():
    torch.manual_seed(0)
    aug = DetectionAugment(train_sizes=(60,), hflip=0.0, color_jitter=None, photometric={"p": 1.0})
    img = torch.rand(3, 60, 80) * 0.5 + 0.25
    tgt = {"boxes": torch.tensor([[1.0, 2, 30, 40]]), "labels": torch.tensor([1])}
    out, t = aug([img], [tgt], train=True)
    assert torch.equal(t[0]["boxes"], tgt["boxes"])
    assert (out[0] - img).abs().mean() > 0.01 and out[0].min() >= 0 and out[0].max() <= 1
    off = DetectionAugment(
        train_sizes=(60,), hflip=0.0, color_jitter=None,
        photometric={"brightness": None, "contrast": None, "saturation": None, "hue": None},
    )  # fmt: skip
    out, _ = off([img], [tgt], train=True)
    assert torch.equal(out[0], img)


@pytest.mark.parametrize("preset", ["mosaic", "lsj", "default", "strong"])
def test_presets_build_and_augment_a_batch(preset):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from tiny_runs import CONF

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"aug={preset}"])
    aug = instantiate(cfg.aug)
    aug.set_epoch(0, 20)
    img, tgt = object_image()
    out, t = aug([img, img.clone()], [tgt, dict(tgt)], train=True, step=0)
    assert len(out) == 2 and all(o.shape[0] == 3 for o in out)
    assert all(len(x["boxes"]) == len(x["labels"]) for x in t)
