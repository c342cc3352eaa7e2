import logging

import numpy as np
import pytest
import torch
from PIL import Image

from visdet.data.image_folder import ImageFolderDataset


def write_image(path, colour, size=(20, 30), mode="RGB"):
    """A solid ``colour`` image of ``size`` (H, W)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), colour, np.uint8)).convert(mode).save(path)


def test_classes_labels_size_and_values(tmp_path):
    write_image(tmp_path / "zebra" / "z1.png", (0, 0, 255))
    write_image(tmp_path / "ant" / "a2.jpg", (255, 0, 0), size=(8, 8))
    write_image(tmp_path / "ant" / "a1.png", (10, 20, 30), size=(50, 7))
    write_image(tmp_path / "bee" / "b.PNG", (128, 128, 128), mode="L")
    (tmp_path / "bee" / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    ds = ImageFolderDataset(tmp_path, image_size=(16, 12))
    assert ds.classes == ["ant", "bee", "zebra"]
    assert [(p.name, y) for p, y in ds.samples] == [
        ("a1.png", 0),
        ("a2.jpg", 0),
        ("b.PNG", 1),
        ("z1.png", 2),
    ]
    assert ds.paths == [p for p, _ in ds.samples] and len(ds) == 4
    for i, (_, label) in enumerate(ds.samples):
        image, y = ds[i]
        assert image.shape == (3, 16, 12) and image.dtype == torch.float32
        assert image.min() >= 0 and image.max() <= 1
        assert y.dtype == torch.int64 and y.ndim == 0 and y.item() == label
    # a solid colour stays that colour through the bilinear resize (JPEG is lossy: loose)
    assert torch.allclose(ds[0][0], torch.tensor([10, 20, 30]).view(3, 1, 1) / 255, atol=1e-6)
    assert torch.allclose(ds[1][0], torch.tensor([1.0, 0, 0]).view(3, 1, 1), atol=0.05)
    assert torch.allclose(ds[2][0], torch.full((3, 16, 12), 128 / 255), atol=1e-6)  # grey->RGB


def test_native_size_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    (tmp_path / "c").mkdir()
    Image.fromarray(pixels).save(tmp_path / "c" / "x.png")
    image, _ = ImageFolderDataset(tmp_path, image_size=(9, 11))[0]
    assert torch.equal(image, torch.from_numpy(pixels).permute(2, 0, 1).float() / 255)


def test_one_class_warns(tmp_path, caplog):
    write_image(tmp_path / "only" / "a.png", (1, 2, 3))
    with caplog.at_level(logging.WARNING):
        ds = ImageFolderDataset(tmp_path)
    assert ds.classes == ["only"] and "only one class" in caplog.text


def test_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing_root"):
        ImageFolderDataset(tmp_path / "missing_root")
    (tmp_path / "loose.png").write_bytes(b"")
    with pytest.raises(ValueError, match="no class sub-folders"):
        ImageFolderDataset(tmp_path)
    write_image(tmp_path / "full" / "a.png", (1, 2, 3))
    (tmp_path / "empty_one").mkdir()
    (tmp_path / "empty_two").mkdir()
    (tmp_path / "empty_two" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match=r"hold no images.*\['empty_one', 'empty_two'\]"):
        ImageFolderDataset(tmp_path)
    with pytest.raises(ValueError, match="image_size"):
        ImageFolderDataset(tmp_path / "full", image_size=(0, 4))


def test_unreadable_image_is_named(tmp_path):
    write_image(tmp_path / "a" / "good.png", (1, 2, 3))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "broken.jpg").write_bytes(b"this is not a jpeg")
    ds = ImageFolderDataset(tmp_path, image_size=(4, 4))
    assert ds[0][0].shape == (3, 4, 4)
    with pytest.raises(ValueError, match=r"cannot read image .*broken\.jpg"):
        ds[1]
