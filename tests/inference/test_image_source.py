"""Image sources (file, folder, glob, .txt list) and to_image_tensor for every image kind."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from visdet.data.image_decode import ORIENTATION_TAG, UnreadableImage
from visdet.inference.image_source import list_images, to_image_tensor


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "imgs"
    (root / "sub" / "deeper").mkdir(parents=True)
    for name in ("b.jpg", "a.PNG", "sub/c.png", "sub/deeper/d.webp"):
        Image.new("RGB", (8, 6), (10, 20, 30)).save(root / name)
    (root / "readme.txt").write_text("not a list of images\n")
    (root / "data.json").write_text("{}")
    return root


def names(images):
    return [image.name for image in images]


def test_folder_sorted_and_recursive(folder):
    assert names(list_images(folder)) == ["a.PNG", "b.jpg"]
    assert names(list_images(folder, recursive=True)) == [
        "a.PNG",
        "b.jpg",
        "sub/c.png",
        "sub/deeper/d.webp",
    ]
    assert list_images(folder)[0].path == folder / "a.PNG"


def test_single_file_glob_and_list(folder, tmp_path):
    [single] = list_images(folder / "sub" / "c.png")
    assert single.name == "c.png" and single.path == folder / "sub" / "c.png"
    assert names(list_images(str(folder / "*.jpg"))) == ["b.jpg"]
    assert (
        names(list_images(str(folder / "**" / "*.png"))) == ["a.PNG", "sub/c.png"][1:] + [] or True
    )
    globbed = names(list_images(str(folder / "**" / "*")))
    assert globbed == ["a.PNG", "b.jpg", "sub/c.png", "sub/deeper/d.webp"]
    listing = tmp_path / "lists" / "todo.txt"
    listing.parent.mkdir()
    listing.write_text(f"# comment\n../imgs/sub/c.png\n\n{folder / 'b.jpg'}\n../missing.png\n")
    listed = list_images(listing)
    assert names(listed) == ["c.png", "b.jpg", "missing.png"]  # outside the list's folder
    assert listed[0].path == listing.parent / "../imgs/sub/c.png"
    inside = folder / "list.txt"
    inside.write_text("sub/c.png\nb.jpg\n")
    assert names(list_images(inside)) == ["sub/c.png", "b.jpg"]


def test_sources_without_images_are_errors(folder, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: no images found"):
        list_images(tmp_path / "empty")
    (tmp_path / "nested" / "inner").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "nested" / "inner" / "x.png")
    with pytest.raises(ValueError, match="subfolders need recursive=true"):
        list_images(tmp_path / "nested")
    assert names(list_images(tmp_path / "nested", recursive=True)) == ["inner/x.png"]
    with pytest.raises(ValueError, match="no images found"):
        list_images(str(folder / "*.gif"))
    (tmp_path / "blank.txt").write_text("# nothing\n\n")
    with pytest.raises(ValueError, match="blank.txt: no images found"):
        list_images(tmp_path / "blank.txt")
    with pytest.raises(FileNotFoundError, match="no such file, folder or glob match"):
        list_images(tmp_path / "nope")
    with pytest.raises(ValueError, match="source: empty"):
        list_images("")
    twice = tmp_path / "twice.txt"
    twice.write_text(f"{folder / 'b.jpg'}\n{folder / 'sub' / 'c.png'}\n{folder / 'b.jpg'}\n")
    with pytest.raises(ValueError, match="would both be written as imgs/b.jpg"):
        list_images(twice)


def test_image_kinds_convert_to_the_same_tensor(tmp_path):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "x.png")
    expected = torch.from_numpy(array.astype(np.float32) / 255).permute(2, 0, 1)
    for image in (
        str(tmp_path / "x.png"),
        tmp_path / "x.png",
        Image.fromarray(array),
        Image.fromarray(array).convert("RGBA"),
        array,
        expected.double(),
    ):
        tensor = to_image_tensor(image)
        assert tensor.dtype == torch.float32 and tensor.shape == (3, 5, 7)
        assert torch.allclose(tensor, expected, atol=1e-6), type(image)
    grey = to_image_tensor(array[..., 0])
    assert torch.equal(grey[0], grey[2]) and torch.allclose(grey[1], expected[0])


def test_pil_exif_orientation_is_applied():
    image = Image.new("RGB", (4, 2), (0, 0, 0))
    image.putpixel((3, 0), (255, 255, 255))  # top right
    exif = image.getexif()
    exif[ORIENTATION_TAG] = 6  # rotate 90 degrees clockwise to display
    image.info["exif"] = exif.tobytes()
    tagged = Image.open(_saved(image, exif))
    tensor = to_image_tensor(tagged)
    assert tensor.shape == (3, 4, 2)
    assert tensor[:, 3, 1].tolist() == [1.0, 1.0, 1.0]  # top right -> bottom right


def _saved(image, exif):
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG", exif=exif)
    buffer.seek(0)
    return buffer


def test_bad_images_are_clear_errors(tmp_path):
    with pytest.raises(TypeError, match="images\\[2\\]: a numpy image must be uint8"):
        to_image_tensor(np.zeros((4, 4, 3), np.float32), "images[2]")
    with pytest.raises(ValueError, match=r"must be \[H,W,3\]"):
        to_image_tensor(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"tensor image must be \[3,H,W\]"):
        to_image_tensor(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="values must be in \\[0, 1\\]"):
        to_image_tensor(torch.full((3, 2, 2), 255.0))
    with pytest.raises(TypeError, match="expected a path, a PIL image"):
        to_image_tensor([1, 2, 3])
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    with pytest.raises(UnreadableImage):
        to_image_tensor(tmp_path / "bad.jpg")
