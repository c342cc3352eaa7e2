import pytest
import torch

from visdet.models import DetectionTransform


def test_resize_pad_and_box_round_trip():
    t = DetectionTransform(min_size=64, max_size=100).eval()
    images = [torch.rand(3, 30, 40), torch.rand(3, 50, 20)]
    targets = [
        {"boxes": torch.tensor([[4.0, 3, 20, 15]]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[1.0, 2, 19, 49]]), "labels": torch.tensor([2])},
    ]
    images_batch, scaled = t(images, targets)
    batch, sizes = images_batch.tensor, images_batch.image_sizes
    # 30x40: scale min(64/30, 100/40) = 2.133 -> 64x85; 50x20: min(64/20, 100/50) = 2 -> 100x40
    assert sizes == [(64, 85), (100, 40)]
    assert batch.shape == (2, 3, 128, 96)  # padded to multiples of 32
    assert batch[1, :, 100:, :].abs().sum() == 0 and batch[0, :, :, 85:].abs().sum() == 0
    torch.testing.assert_close(
        scaled[0]["boxes"], torch.tensor([[4 * 85 / 40, 3 * 64 / 30, 20 * 85 / 40, 15 * 64 / 30]])
    )
    back = t.postprocess([{"boxes": s["boxes"]} for s in scaled], sizes, [(30, 40), (50, 20)])
    for b, tgt in zip(back, targets):
        torch.testing.assert_close(b["boxes"], tgt["boxes"])
    assert torch.equal(targets[0]["boxes"], torch.tensor([[4.0, 3, 20, 15]]))  # inputs untouched


def test_normalisation_uses_mean_and_std():
    t = DetectionTransform(
        min_size=32, max_size=32, image_mean=(0.5, 0.5, 0.5), image_std=(0.25, 0.5, 1.0)
    ).eval()
    batch = t([torch.full((3, 32, 32), 0.75)])[0].tensor
    assert batch[0, :, 0, 0].tolist() == [1.0, 0.5, 0.25]


def test_bad_arguments():
    with pytest.raises(ValueError, match="min_size"):
        DetectionTransform(min_size=0)
    with pytest.raises(ValueError, match="image_std"):
        DetectionTransform(image_std=(1.0, 0.0, 1.0))
