"""Post-encoder modules on hand-made tensors (DESIGN.md's example values) and brute force."""

import math

import pytest
import torch

from visdet.models.post_encoder import (
    POST_ENCODERS,
    GlobalAvgPool,
    Identity,
    PostEncoderPipeline,
    SpatialPoint,
    build_post_encoder,
    global_avg_pool,
    spatial_point,
)


def round_half_away(v: float) -> int:
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def brute_nearest(features, x, y, src_h, src_w):
    _, _, h, w = features.shape
    xi = min(max(round_half_away(x * w / src_w), 0), w - 1)
    yi = min(max(round_half_away(y * h / src_h), 0), h - 1)
    return features[:, :, yi, xi]


def brute_bilinear(features, x, y, src_h, src_w):
    """Bilinear interpolation by hand (align_corners=True, border = clamp to the map)."""
    _, _, h, w = features.shape
    xf = min(max(x * w / src_w, 0.0), w - 1.0)
    yf = min(max(y * h / src_h, 0.0), h - 1.0)
    x0, y0 = min(int(math.floor(xf)), w - 2), min(int(math.floor(yf)), h - 2)
    ax, ay = xf - x0, yf - y0
    f = features.double()
    return (
        f[:, :, y0, x0] * (1 - ax) * (1 - ay)
        + f[:, :, y0, x0 + 1] * ax * (1 - ay)
        + f[:, :, y0 + 1, x0] * (1 - ax) * ay
        + f[:, :, y0 + 1, x0 + 1] * ax * ay
    )


def test_design_example_channel_value():
    f = torch.zeros(1, 3, 10, 10)
    f[:, 1] = 7
    out = spatial_point(f, torch.tensor([5.0, 5.0]), 10, 10, "nearest")
    assert out.tolist() == [[0.0, 7.0, 0.0]]


def test_design_example_clamp():
    f = torch.arange(16.0).view(1, 1, 4, 4)
    out = spatial_point(f, torch.tensor([100.0, 100.0]), 4, 4, "nearest")
    assert out.item() == f[0, 0, 3, 3].item()
    out = spatial_point(f, torch.tensor([-50.0, -3.0]), 4, 4, "nearest")
    assert out.item() == f[0, 0, 0, 0].item()


def test_design_example_bilinear_ramp():
    ramp = torch.arange(4.0).expand(1, 1, 4, 4).contiguous()  # value = x
    assert spatial_point(ramp, torch.tensor([1.5, 2.0]), 4, 4, "bilinear").item() == pytest.approx(
        1.5
    )
    # beyond the border the ramp stays at its last value
    assert spatial_point(ramp, torch.tensor([9.0, 0.0]), 4, 4, "bilinear").item() == 3.0


def test_rounding_half_away_from_zero():
    f = torch.arange(10.0).view(1, 1, 1, 10)  # value = column
    # src width 20 on a 10-wide map: x_f = x / 2; 5 -> 2.5 -> 3, 3 -> 1.5 -> 2, 1 -> 0.5 -> 1
    for x, col in [(5.0, 3), (3.0, 2), (1.0, 1), (0.9, 0), (-1.0, 0)]:
        out = spatial_point(f, torch.tensor([x, 0.0]), 2, 20, "nearest")
        assert out.item() == col, x


def test_nearest_and_bilinear_match_brute_force():
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        h, w = torch.randint(2, 9, (2,), generator=g).tolist()
        src_h, src_w = torch.randint(5, 200, (2,), generator=g).tolist()
        f = torch.randn(2, 3, h, w, generator=g)
        pts = torch.rand(2, 2, generator=g) * torch.tensor([src_w * 1.2, src_h * 1.2]) - 5
        near = spatial_point(f, pts, src_h, src_w, "nearest")
        bil = spatial_point(f, pts, src_h, src_w, "bilinear")
        for b in range(2):
            x, y = pts[b].tolist()
            ref = brute_nearest(f[b : b + 1], x, y, src_h, src_w)
            assert torch.equal(near[b : b + 1], ref)
            refb = brute_bilinear(f[b : b + 1], x, y, src_h, src_w)
            torch.testing.assert_close(bil[b : b + 1].double(), refb, atol=1e-5, rtol=1e-5)


def test_batch_of_points_and_single_point():
    f = torch.randn(3, 4, 5, 6)
    pts = torch.tensor([[0.0, 0.0], [5.0, 4.0], [2.0, 3.0]])
    out = spatial_point(f, pts, 5, 6)
    assert out.shape == (3, 4)
    for b in range(3):
        x, y = pts[b].long().tolist()
        assert torch.equal(out[b], f[b, :, y, x])
    single = spatial_point(f, torch.tensor([2.0, 3.0]), 5, 6)
    assert torch.equal(single, f[:, :, 3, 2])
    assert torch.equal(spatial_point(f, torch.tensor([[2.0, 3.0]]), 5, 6), single)


@pytest.mark.parametrize(
    "features, points, src, mode, match",
    [
        (torch.zeros(3, 4, 4), torch.zeros(2), (4, 4), "nearest", "4-D"),
        (torch.zeros(1, 0, 4, 4), torch.zeros(2), (4, 4), "nearest", ">= 1"),
        (torch.zeros(1, 2, 4, 4), torch.zeros(2), (0, 4), "nearest", "source size"),
        (torch.zeros(1, 2, 4, 4), torch.zeros(2), (4, -1), "nearest", "source size"),
        (torch.zeros(1, 2, 1, 4), torch.zeros(2), (4, 4), "bilinear", "at least 2x2"),
        (torch.zeros(1, 2, 4, 4), torch.zeros(3), (4, 4), "nearest", r"\[2\] or \[B, 2\]"),
        (
            torch.zeros(2, 2, 4, 4),
            torch.zeros(3, 2),
            (4, 4),
            "nearest",
            "3 points for a batch of 2",
        ),
        (torch.zeros(1, 2, 4, 4), torch.zeros(2), (4, 4), "cubic", "mode"),
    ],
)
def test_spatial_point_errors(features, points, src, mode, match):
    with pytest.raises(ValueError, match=match):
        spatial_point(features, points, *src, mode=mode)


def test_global_avg_pool_and_shapes():
    f = torch.randn(2, 5, 3, 4)
    torch.testing.assert_close(global_avg_pool(f), f.sum((2, 3)) / 12)
    assert GlobalAvgPool().output_shape((5, 3, 4)) == (5,)
    with pytest.raises(ValueError, match="4-D"):
        global_avg_pool(torch.zeros(5, 3, 4))
    with pytest.raises(ValueError, match=">= 1"):
        global_avg_pool(torch.zeros(2, 5, 0, 4))
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        GlobalAvgPool().output_shape((5,))


def test_spatial_point_module():
    f = torch.randn(2, 3, 8, 8)
    m = SpatialPoint("bilinear", source_size=(32, 32), point=(12.0, 20.0))
    torch.testing.assert_close(
        m.apply(f), spatial_point(f, torch.tensor([12.0, 20.0]), 32, 32, "bilinear")
    )
    m.set_point([[1.0, 2.0], [3.0, 4.0]])
    assert m.apply(f).shape == (2, 3)
    assert m.output_shape((3, 8, 8)) == (3,)
    with pytest.raises(ValueError, match="at least 2x2"):
        m.output_shape((3, 1, 8))
    with pytest.raises(ValueError, match="set_point"):
        SpatialPoint().apply(f)
    with pytest.raises(ValueError, match="interpolation"):
        SpatialPoint("area")
    with pytest.raises(ValueError, match="source_size"):
        SpatialPoint(source_size=(0, 5), point=(1, 1))


def test_pipeline_chains_and_checks_shapes():
    f = torch.randn(2, 3, 4, 4)
    assert PostEncoderPipeline([]).apply(f) is f
    assert PostEncoderPipeline([]).output_shape((3, 4, 4)) == (3, 4, 4)
    pipe = PostEncoderPipeline([Identity(), GlobalAvgPool()])
    assert pipe.output_shape((3, 4, 4)) == (3,)
    torch.testing.assert_close(pipe.apply(f), f.mean((2, 3)))
    bad = PostEncoderPipeline([GlobalAvgPool(), SpatialPoint(source_size=(4, 4), point=(1, 1))])
    with pytest.raises(ValueError, match=r"step 1 \(spatial_point\) gets shape \[3\]"):
        bad.output_shape((3, 4, 4))
    with pytest.raises(ValueError, match="step 1"):
        bad.apply(f)
    with pytest.raises(TypeError, match="step 0"):
        PostEncoderPipeline([torch.nn.Identity()])


def test_table_keys():
    assert set(POST_ENCODERS) == {"none", "global_avg_pool", "spatial_point"}
    assert isinstance(build_post_encoder("none"), Identity)
    sp = build_post_encoder("spatial_point", interpolation="bilinear")
    assert sp.interpolation == "bilinear"
    with pytest.raises(ValueError, match="expected one of"):
        build_post_encoder("max_pool")


def test_spatial_point_is_torchscript_compatible():
    scripted = torch.jit.script(spatial_point)
    f = torch.randn(2, 3, 6, 7)
    pts = torch.tensor([[3.3, 1.0], [6.0, 5.5]])
    for mode in ("nearest", "bilinear"):
        assert torch.equal(scripted(f, pts, 12, 14, mode), spatial_point(f, pts, 12, 14, mode))
