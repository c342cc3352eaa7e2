import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from visdet.features.preview import grid_shape, normalize_channels, save_feature_grid


def _feature_map(c: int = 6, h: int = 5, w: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(c, h, w, generator=g)


# normalize_channels: hand-computed values


def test_per_channel_scales_each_channel_on_its_own():
    x = torch.tensor([[[0.0, 2.0], [4.0, 8.0]], [[-1.0, -1.0], [1.0, 3.0]]])
    out = normalize_channels(x, "per_channel")
    expected = torch.tensor([[[0.0, 0.25], [0.5, 1.0]], [[0.0, 0.0], [0.5, 1.0]]])
    assert out.shape == x.shape
    torch.testing.assert_close(out, expected)


def test_global_uses_one_scale_across_channels():
    x = torch.tensor([[[0.0, 2.0], [4.0, 8.0]], [[-1.0, -1.0], [1.0, 3.0]]])
    out = normalize_channels(x, "global")
    # min -1, max 8, span 9
    expected = (x + 1.0) / 9.0
    torch.testing.assert_close(out, expected)


def test_constant_channel_becomes_zeros_without_nan_or_warning():
    x = torch.stack([torch.full((3, 3), 5.0), torch.arange(9.0).reshape(3, 3)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = normalize_channels(x, "per_channel")
        flat = normalize_channels(torch.full((2, 3, 3), -7.0), "global")
    assert torch.equal(out[0], torch.zeros(3, 3))
    torch.testing.assert_close(out[1], torch.arange(9.0).reshape(3, 3) / 8.0)
    assert torch.equal(flat, torch.zeros(2, 3, 3))
    assert not out.isnan().any()


def test_normalize_channels_accepts_integer_input_and_returns_float():
    out = normalize_channels(torch.tensor([[[0, 5], [10, 10]]]), "per_channel")
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tensor([[[0.0, 0.5], [1.0, 1.0]]]))


def test_normalize_channels_errors():
    with pytest.raises(ValueError, match="normalize must be one of .*got 'minmax'"):
        normalize_channels(torch.zeros(1, 2, 2), "minmax")
    with pytest.raises(ValueError, match=r"features must be \[N,H,W\], got shape \[2, 2\]"):
        normalize_channels(torch.zeros(2, 2), "global")


# grid_shape


@pytest.mark.parametrize(
    ("n_cells", "columns", "expected"),
    [
        (1, None, (1, 1)),
        (4, None, (2, 2)),
        (5, None, (2, 3)),
        (16, None, (4, 4)),
        (17, None, (4, 5)),
        (7, 2, (4, 2)),
        (3, 8, (1, 3)),
    ],
)
def test_grid_shape(n_cells, columns, expected):
    assert grid_shape(n_cells, columns) == expected


def test_grid_shape_errors():
    with pytest.raises(ValueError, match="n_cells must be >= 1, got 0"):
        grid_shape(0)
    with pytest.raises(ValueError, match="columns must be >= 1 or None, got 0"):
        grid_shape(4, 0)


# save_feature_grid


def _png_size(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.verify()
    with Image.open(path) as im:
        return im.size


def test_writes_a_valid_png_and_returns_the_path(tmp_path):
    target = tmp_path / "sub" / "grid.png"
    out = save_feature_grid(_feature_map(), str(target), num_channels=4, title="layer4")
    assert out == target
    assert target.is_file()
    _png_size(target)
    assert [p.name for p in target.parent.iterdir()] == ["grid.png"]  # no temp files left


def test_grid_layout_shows_in_the_image_size(tmp_path):
    feats = _feature_map(c=8)
    one_row = _png_size(save_feature_grid(feats, tmp_path / "a.png", num_channels=4, columns=4))
    two_rows = _png_size(save_feature_grid(feats, tmp_path / "b.png", num_channels=4, columns=2))
    four_rows = _png_size(save_feature_grid(feats, tmp_path / "c.png", num_channels=8, columns=2))
    assert one_row[0] > two_rows[0] == four_rows[0]  # widths: 4 columns vs 2 columns
    assert one_row[1] < two_rows[1] < four_rows[1]  # heights grow with rows


def test_fewer_channels_than_num_channels_and_batched_input(tmp_path):
    feats = _feature_map(c=3)
    a = _png_size(save_feature_grid(feats, tmp_path / "a.png", num_channels=16))
    b = _png_size(save_feature_grid(feats[None], tmp_path / "b.png", num_channels=3))
    assert a == b  # 3 channels either way: same 2x2 grid


def test_input_image_fills_the_first_cell(tmp_path):
    red = torch.zeros(3, 20, 20)
    red[0] = 1.0
    path = save_feature_grid(_feature_map(c=2), tmp_path / "g.png", image=red, cmap="gray")
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB")).astype(int)
    pure_red = (rgb[..., 0] == 255) & (rgb[..., 1] == 0) & (rgb[..., 2] == 0)
    assert pure_red.sum() > 100  # gray thumbnails and white background hold no pure red


def test_constant_feature_map_renders_without_warnings(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save_feature_grid(torch.ones(2, 4, 4), tmp_path / "flat.png", normalize="per_channel")
        save_feature_grid(torch.ones(2, 4, 4), tmp_path / "flat2.png", normalize="global")


def test_overwrites_an_existing_file(tmp_path):
    target = tmp_path / "g.png"
    target.write_bytes(b"old")
    save_feature_grid(_feature_map(c=1), target)
    _png_size(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.png"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"features": torch.zeros(4, 4)}, r"features must be .*got shape \[4, 4\]"),
        ({"features": torch.zeros(2, 3, 4, 4)}, r"features must be .*got shape \[2, 3, 4, 4\]"),
        ({"num_channels": 0}, "num_channels must be >= 1, got 0"),
        ({"normalize": "minmax"}, "normalize must be one of .*got 'minmax'"),
        ({"cmap": "no-such-map"}, "cmap must be .*got 'no-such-map'"),
        ({"image": torch.zeros(1, 4, 4)}, r"image must be \[3,H,W\], got shape \[1, 4, 4\]"),
        ({"image": torch.full((3, 4, 4), 2.0)}, r"image values must be finite and in \[0, 1\]"),
    ],
)
def test_errors(tmp_path, kwargs, message):
    args = {"features": _feature_map(c=2), "path": tmp_path / "g.png", **kwargs}
    with pytest.raises(ValueError, match=message):
        save_feature_grid(**args)
    assert list(tmp_path.iterdir()) == []


def test_non_finite_values_are_counted(tmp_path):
    feats = _feature_map(c=2)
    feats[0, 0, 0] = float("nan")
    feats[1, 2, 1] = float("inf")
    feats[1, 3, 3] = float("-inf")
    with pytest.raises(ValueError, match="features has 3 non-finite values"):
        save_feature_grid(feats, tmp_path / "g.png")
    assert list(tmp_path.iterdir()) == []
