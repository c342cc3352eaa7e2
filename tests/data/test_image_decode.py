import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from visdet.data import CocoDetection, collate_detection
from visdet.data.coco import DatasetError, SkippedImage
from visdet.data.datamodule import DetectionDataModule
from visdet.data.image_decode import decode_image, read_header, to_rgb_array

W, H = 40, 30
BOX = (slice(5, 15), slice(10, 22))  # rows, cols of the known region


def picture(mode, background, inside):
    """A W x H image of ``mode`` with ``inside`` in BOX and ``background`` elsewhere."""
    im = Image.new(mode, (W, H), background)
    x0, x1, y0, y1 = BOX[1].start, BOX[1].stop, BOX[0].start, BOX[0].stop
    im.paste(inside, (x0, y0, x1, y1))
    return im


def palette_picture(mode):
    im = Image.new("P", (W, H), 0)
    im.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    im.paste(1, (BOX[1].start, BOX[0].start, BOX[1].stop, BOX[0].stop))
    return im if mode == "P" else im.convert("PA")


CASES = {
    # mode: (image, file suffix, expected RGB inside, expected RGB outside)
    "1": (picture("1", 0, 1), "png", (1, 1, 1), (0, 0, 0)),
    "L": (picture("L", 50, 200), "png", (200 / 255,) * 3, (50 / 255,) * 3),
    "LA": (picture("LA", (50, 255), (200, 0)), "png", (200 / 255,) * 3, (50 / 255,) * 3),
    "P": (
        palette_picture("P"),
        "png",
        (200 / 255, 100 / 255, 50 / 255),
        (10 / 255, 20 / 255, 30 / 255),
    ),
    "PA": (
        palette_picture("PA"),
        None,  # Pillow writes PA to no format: checked in memory
        (200 / 255, 100 / 255, 50 / 255),
        (10 / 255, 20 / 255, 30 / 255),
    ),
    "RGB": (
        picture("RGB", (1, 2, 3), (200, 100, 50)),
        "png",
        (200 / 255, 100 / 255, 50 / 255),
        (1 / 255, 2 / 255, 3 / 255),
    ),
    "RGBA": (
        picture("RGBA", (1, 2, 3, 255), (200, 100, 50, 0)),
        "png",
        (200 / 255, 100 / 255, 50 / 255),  # alpha dropped, not composited
        (1 / 255, 2 / 255, 3 / 255),
    ),
    "CMYK": (picture("CMYK", (0, 0, 0, 0), (255, 0, 0, 0)), "tiff", (0, 1, 1), (1, 1, 1)),
    "I;16": (picture("I;16", 1000, 65535), "png", (1, 1, 1), (1000 / 65535,) * 3),
    "I": (picture("I", 0, 40000), "tiff", (40000 / 65535,) * 3, (0, 0, 0)),
    "F": (picture("F", 0.25, 0.75), "tiff", (0.75,) * 3, (0.25,) * 3),
}


@pytest.mark.parametrize("mode", list(CASES))
def test_every_mode_decodes_to_rgb_in_unit_range(tmp_path, mode):
    im, suffix, inside, outside = CASES[mode]
    if suffix is None:
        image = torch.from_numpy(to_rgb_array(im)).permute(2, 0, 1)
    else:
        path = tmp_path / f"im.{suffix}"
        im.save(path)
        with Image.open(path) as back:
            assert back.mode.startswith(mode.split(";")[0])  # the file really holds that mode
        image = decode_image(path)
    assert image.shape == (3, H, W) and image.dtype == torch.float32
    assert image.min() >= 0 and image.max() <= 1
    region = image[:, BOX[0], BOX[1]]
    want_in = torch.tensor(inside, dtype=torch.float32)[:, None, None].expand_as(region)
    assert torch.allclose(region, want_in, atol=1e-6)
    rest = image.clone()
    rest[:, BOX[0], BOX[1]] = torch.tensor(outside, dtype=torch.float32)[:, None, None]
    assert torch.allclose(
        rest, torch.tensor(outside, dtype=torch.float32)[:, None, None].expand_as(rest), atol=1e-6
    )


def test_16_bit_ramp_is_scaled_not_clipped(tmp_path):
    ramp = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    image = decode_image(tmp_path / "ramp.png")
    assert image.shape == (3, 256, 256)
    assert image.min() == 0 and image.max() == 1
    assert abs(image.mean().item() - 0.5) < 1e-3
    assert abs(image[0, 128, 0].item() - 32768 / 65535) < 1e-6


def rotated_jpeg(path, orientation=6):
    """A raw 40 x 30 JPEG, red in BOX on grey, whose EXIF says rotate 90 degrees clockwise."""
    raw = picture("RGB", (128, 128, 128), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = orientation
    raw.save(path, quality=95, subsampling=0, exif=exif)


def test_exif_orientation_is_applied(tmp_path):
    rotated_jpeg(tmp_path / "r.jpg")
    assert read_header(tmp_path / "r.jpg").oriented_size == (H, W)
    image = decode_image(tmp_path / "r.jpg")
    assert image.shape == (3, W, H)  # shown 30 wide, 40 high
    # raw (row y, col x) lands at (row x, col H - 1 - y) when turned clockwise
    red = image[:, 11:21, 16:24]  # rows 10..21 -> cols 8..19; cols 10..21 -> rows 10..21
    assert (red[0] > 0.9).all() and (red[1:] < 0.1).all()
    assert torch.allclose(image[:, 0:5, :], torch.full((3, 5, H), 128 / 255), atol=0.03)
    raw = decode_image(tmp_path / "r.jpg", apply_orientation=False)
    assert raw.shape == (3, H, W)


def write_one(tmp_path, name, width, height, bbox):
    (tmp_path / "ann.json").write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": name, "width": width, "height": height}],
                "annotations": [
                    {
                        "id": 1,
                        "image_id": 1,
                        "category_id": 1,
                        "bbox": bbox,
                        "iscrowd": 0,
                        "area": 1,
                    }
                ],
                "categories": [{"id": 1, "name": "thing"}],
            }
        )
    )
    return tmp_path / "ann.json"


def test_dataset_follows_exif_and_puts_boxes_on_the_right_pixels(tmp_path):
    rotated_jpeg(tmp_path / "r.jpg")
    # the shown image: the red block spans cols 30-1-14=15 .. 30-1-5=24, rows 10..21
    ds = CocoDetection(write_one(tmp_path, "r.jpg", H, W, [15, 10, 10, 12]), tmp_path)
    image, target = ds[0]
    assert image.shape == (3, W, H) and target["orig_size"] == (W, H)
    x1, y1, x2, y2 = (int(v) for v in target["boxes"][0])
    inside = image[:, y1 + 1 : y2 - 1, x1 + 1 : x2 - 1]
    assert (inside[0] > 0.9).all() and (inside[1:] < 0.1).all()


def test_annotated_on_raw_pixels_is_used_unrotated_with_one_warning(tmp_path, caplog):
    rotated_jpeg(tmp_path / "r.jpg")
    with caplog.at_level(logging.WARNING):
        ds = CocoDetection(write_one(tmp_path, "r.jpg", W, H, [10, 5, 12, 10]), tmp_path)
    assert "1 images match their annotated width/height only without their EXIF rotation" in (
        caplog.text
    )
    image, target = ds[0]
    assert image.shape == (3, H, W)
    x1, y1, x2, y2 = (int(v) for v in target["boxes"][0])
    inside = image[:, y1 + 1 : y2 - 1, x1 + 1 : x2 - 1]
    assert (inside[0] > 0.9).all() and (inside[1:] < 0.1).all()


def test_any_other_size_mismatch_is_an_error_naming_both_sizes(tmp_path):
    rotated_jpeg(tmp_path / "r.jpg")
    with pytest.raises(
        DatasetError,
        match=r"r.jpg is 40x30 \(30x40 after its EXIF orientation 6\)"
        r" but the annotation says 50x50",
    ):
        CocoDetection(write_one(tmp_path, "r.jpg", 50, 50, [1, 1, 5, 5]), tmp_path)
    picture("RGB", 0, 0).save(tmp_path / "p.png")
    with pytest.raises(DatasetError, match="p.png is 40x30 but the annotation says 30x40"):
        CocoDetection(write_one(tmp_path, "p.png", 30, 40, [1, 1, 5, 5]), tmp_path)


class OneSplit:
    def __init__(self, ann_file, image_dir):
        from visdet.data.sources import Split

        self.split = Split(ann_file, image_dir)

    def prepare(self):
        pass

    def splits(self):
        return {"train": self.split, "val": self.split}


def test_truncated_image_is_skipped_counted_and_named(tmp_path, caplog):
    picture("RGB", (9, 9, 9), (200, 0, 0)).save(tmp_path / "t.jpg", quality=95)
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    dm = DetectionDataModule(
        OneSplit(write_one(tmp_path, "t.jpg", W, H, [1, 1, 5, 5]), tmp_path), 1
    )
    dm.setup("fit")  # the header is intact: only decoding finds the damage
    item = dm.train_set[0]
    assert isinstance(item, SkippedImage) and "truncated" in item.reason.lower()
    batch = collate_detection([item])
    assert batch["images"] == [] and batch["skipped"] == 1
    with caplog.at_level(logging.WARNING):
        dm.on_before_batch_transfer(batch, 0)
        dm.on_before_batch_transfer(collate_detection([dm.train_set[0]]), 0)
    assert dm.skipped_files == [str(tmp_path / "t.jpg")]
    assert caplog.text.count("skipping an image that cannot be decoded") == 1
    assert "t.jpg" in caplog.text


def test_image_above_the_pixel_limit_is_named_and_skipped(tmp_path, caplog):
    picture("RGB", 0, 0).save(tmp_path / "big.png")
    path = write_one(tmp_path, "big.png", W, H, [1, 1, 5, 5])
    with caplog.at_level(logging.WARNING):
        ds = CocoDetection(path, tmp_path, max_image_pixels=W * H - 1)
    assert "big.png (40x30 = 1200 pixels is above the decompression-bomb limit of 1199" in (
        caplog.text
    )
    assert isinstance(ds[0], SkippedImage)
    assert isinstance(CocoDetection(path, tmp_path, max_image_pixels=W * H)[0], tuple)


def test_default_limit_is_pillows_and_a_larger_one_overrides_it(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow raises at twice its limit
    picture("RGB", 0, 0).save(tmp_path / "big.png")
    path = write_one(tmp_path, "big.png", W, H, [1, 1, 5, 5])
    skipped = CocoDetection(path, tmp_path)[0]
    assert isinstance(skipped, SkippedImage) and "limit of 100 " in skipped.reason
    image, _ = CocoDetection(path, tmp_path, max_image_pixels=10_000)[0]
    assert image.shape == (3, H, W)
    assert Image.MAX_IMAGE_PIXELS == 100  # Pillow's own setting is left as it was


def test_open_rgb_of_classification_and_crops_follows_the_same_rules(tmp_path):
    from visdet.data.image_folder import open_rgb

    rotated_jpeg(tmp_path / "r.jpg")
    assert open_rgb(tmp_path / "r.jpg").size == (H, W)  # turned as shown
    assert open_rgb(tmp_path / "r.jpg", annotated_size=(W, H)).size == (W, H)  # raw-annotated
    assert open_rgb(tmp_path / "r.jpg", annotated_size=(H, W)).size == (H, W)
    ramp = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    pixels = np.asarray(open_rgb(tmp_path / "ramp.png"), dtype=np.float32) / 255
    assert abs(pixels.mean() - 0.5) < 0.01
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(ValueError, match="cannot read image .*bad.png"):
        open_rgb(tmp_path / "bad.png")
