import pytest
import reference as ref
import torch

from visdet.ops import roi_align

OUTPUT_SIZES = [1, (2, 3), 7]
SAMPLING = [0, -1, 1, 2, 3]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def random_rois(k, n, height, width, scale, seed, dtype=torch.float64):
    """[K, 5] rois in image coordinates; in feature coordinates they span [-3, size + 3] so
    many cross the borders, plus some zero-size rois."""
    g = torch.Generator().manual_seed(seed)
    lo = torch.tensor([-3.0, -3.0], dtype=torch.float64)
    hi = torch.tensor([width + 3.0, height + 3.0], dtype=torch.float64)
    p = lo + torch.rand(k, 2, 2, generator=g, dtype=torch.float64) * (hi - lo)
    p1, p2 = torch.minimum(p[:, 0], p[:, 1]), torch.maximum(p[:, 0], p[:, 1])
    p2[: k // 5] = p1[: k // 5]  # zero-size
    batch = torch.randint(0, n, (k, 1), generator=g).to(torch.float64)
    return torch.cat([batch, p1 / scale, p2 / scale], dim=1).to(dtype)


def expected(feature, rois, output_size, scale, sampling, aligned):
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    out = ref.roi_align(
        feature.double().tolist(), rois.double().tolist(), ph, pw, scale, sampling, aligned
    )
    return torch.tensor(out, dtype=torch.float64).reshape(len(rois), feature.shape[1], ph, pw)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling", SAMPLING)
@pytest.mark.parametrize("output_size", OUTPUT_SIZES)
def test_against_reference_float64(output_size, sampling, aligned):
    for seed, scale in enumerate([1.0, 0.5, 0.25]):
        feature = torch.randn(
            2, 2, 6, 7, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
        )
        rois = random_rois(6, 2, 6, 7, scale, seed)
        out = roi_align(feature, rois, output_size, scale, sampling, aligned)
        torch.testing.assert_close(
            out,
            expected(feature, rois, output_size, scale, sampling, aligned),
            rtol=1e-10,
            atol=1e-10,
        )


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling", [0, 2])
def test_against_reference_float32_list_format(sampling, aligned):
    for seed in range(4):
        g = torch.Generator().manual_seed(seed)
        feature = torch.randn(3, 2, 8, 5, generator=g)
        per_image = [
            random_rois(k, 1, 8, 5, 0.5, seed + 10 * k, torch.float32)[:, 1:] for k in (3, 0, 4)
        ]
        rois = torch.cat(
            [torch.cat([torch.full((len(b), 1), float(i)), b], 1) for i, b in enumerate(per_image)]
        )
        want = expected(feature, rois, (2, 3), 0.5, sampling, aligned).float()
        for boxes in (per_image, rois):
            out = roi_align(feature, boxes, (2, 3), 0.5, sampling, aligned)
            assert out.dtype == torch.float32
            torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("height, width", [(1, 1), (1, 5), (2, 1), (2, 2), (1, 2)])
@pytest.mark.parametrize("aligned", [False, True])
def test_tiny_feature_maps(height, width, aligned):
    feature = torch.randn(
        1, 2, height, width, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    rois = random_rois(10, 1, height, width, 1.0, height * 10 + width)
    for sampling in (0, 2):
        out = roi_align(feature, rois, (2, 3), 1.0, sampling, aligned)
        torch.testing.assert_close(out, expected(feature, rois, (2, 3), 1.0, sampling, aligned))


def test_fully_outside_rois_are_zero():
    feature = torch.randn(1, 3, 6, 8, dtype=torch.float64) + 5
    rois = torch.tensor(
        [
            [0, -9.0, -9.0, -2.0, -1.5],  # left of and above x, y = -1
            [0, 9.5, 1.0, 15.0, 4.0],  # right of x = W
            [0, 1.0, 6.5, 5.0, 12.0],  # below y = H
        ],
        dtype=torch.float64,
    )
    for aligned in (False, True):
        out = roi_align(feature, rois, 2, 1.0, 2, aligned)
        torch.testing.assert_close(out, expected(feature, rois, 2, 1.0, 2, aligned))
        assert bool((out == 0).all())


def test_border_band_clamps_to_edge():
    # One sample per RoI (aligned=False widens these RoIs to 1x1; the sample is the centre).
    # [-1, 0] reads row/column 0; [H-1, H] reads row H-1 without interpolation; beyond is 0.
    feature = torch.arange(1.0, 13.0, dtype=torch.float64).reshape(1, 1, 3, 4)
    rois = torch.tensor(
        [
            [0, -0.9, -0.9, -0.1, -0.1],  # sample (-0.4, -0.4) -> [0, 0]
            [0, 3.1, 2.1, 3.9, 2.9],  # sample (3.6, 2.6) -> [2, 3]
            [0, 3.1, 2.7, 3.9, 3.5],  # y = 3.2 > H -> 0
            [0, -2.0, 0.0, -1.2, 1.0],  # x = -1.5 < -1 -> 0
            [0, 1.0, 2.5, 2.0, 3.5],  # y = 3.0 == H: row 2 at x = 1.5
            [0, -1.5, 0.0, -0.5, 1.0],  # x = -1.0: column 0 at y = 0.5
        ],
        dtype=torch.float64,
    )
    out = roi_align(feature, rois, 1, 1.0, 1, aligned=False)
    assert out.flatten().tolist() == [1.0, 12.0, 0.0, 0.0, 10.5, 3.0]
    assert out.flatten().tolist() == expected(feature, rois, 1, 1.0, 1, False).flatten().tolist()


def test_constant_feature_inside():
    # Any RoI whose samples all fall inside the map averages a constant to that constant.
    feature = torch.full((1, 1, 10, 10), 3.5)
    rois = torch.tensor([[0, 1.0, 2.0, 7.0, 8.5], [0, 0.0, 0.0, 9.0, 9.0]])
    out = roi_align(feature, rois, 7, 1.0, 0, aligned=False)
    torch.testing.assert_close(out, torch.full((2, 1, 7, 7), 3.5))


def test_many_channels_chunked():
    # Channels are independent: channel c of (c + 1) * base pools to (c + 1) * pooled base.
    # 256 channels and a 4x4 grid make forward and backward run over many chunks of RoIs.
    g = torch.Generator().manual_seed(0)
    base = torch.randn(2, 1, 12, 12, generator=g, dtype=torch.float64)
    factors = torch.arange(1.0, 257.0, dtype=torch.float64).view(1, 256, 1, 1)
    rois = random_rois(40, 2, 12, 12, 1.0, 1, torch.float32)
    pooled_base = expected(base, rois, 7, 1.0, 4, True)
    feature = (base.float() * factors.float()).requires_grad_()
    out = roi_align(feature, rois, 7, 1.0, 4, aligned=True)
    torch.testing.assert_close(out.double(), pooled_base * factors, rtol=1e-4, atol=1e-4)
    # Adjoint identity (roi_align is linear in its input): <grad, f> = <upstream, pool(f)>
    # for every channel, with f = base and pool(base) from the reference.
    upstream = torch.randn(out.shape, generator=g)
    out.backward(upstream)
    lhs = (feature.grad.double() * base).sum((0, 2, 3))
    rhs = (upstream.double() * pooled_base).sum((0, 2, 3))
    torch.testing.assert_close(lhs, rhs, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling", [0, 2])
def test_gradcheck(sampling, aligned):
    g = torch.Generator().manual_seed(3)
    feature = torch.randn(2, 2, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    rois = random_rois(5, 2, 5, 6, 0.5, 3)
    assert torch.autograd.gradcheck(
        lambda f: roi_align(f, rois, (2, 3), 0.5, sampling, aligned), (feature,)
    )


def test_empty_boxes():
    feature = torch.randn(2, 3, 5, 5)
    for boxes in (torch.zeros(0, 5), [torch.zeros(0, 4), torch.zeros(0, 4)]):
        out = roi_align(feature, boxes, (2, 4))
        assert out.shape == (0, 3, 2, 4) and out.dtype == torch.float32


@pytest.mark.parametrize(
    "boxes",
    [torch.zeros(0, 5), torch.tensor([[0, 2.0, 2.0, 2.0, 2.0]])],
    ids=["no-rois", "empty-grid"],
)
def test_output_is_differentiable_without_samples(boxes):
    # Like torchvision's autograd op, the output is part of the graph even when no sample is
    # taken (no RoIs, or aligned zero-size RoIs whose adaptive grid is 0x0); the gradient is 0.
    feature = torch.randn(1, 2, 6, 7, requires_grad=True)
    out = roi_align(feature, boxes, 2, 1.0, 0, aligned=True)
    assert out.requires_grad
    out.sum().backward()
    assert feature.grad is not None and not bool(feature.grad.any())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_dtype(dtype):
    g = torch.Generator().manual_seed(0)
    feature = torch.randn(1, 2, 6, 6, generator=g).to(dtype)
    rois = random_rois(5, 1, 6, 6, 1.0, 0, torch.float32)
    out = roi_align(feature, rois, 2, 1.0, 2, True)
    assert out.dtype == dtype
    want = expected(feature, rois, 2, 1.0, 2, True)
    torch.testing.assert_close(out.double(), want, rtol=2e-2, atol=2e-2)


def test_bad_arguments():
    feature = torch.randn(2, 1, 4, 4)
    for batch in (2.0, -1.0):
        with pytest.raises(ValueError, match="batch"):
            roi_align(feature, torch.tensor([[batch, 0, 0, 1, 1]]), 2)
    with pytest.raises(ValueError):
        roi_align(feature, torch.zeros(3, 4), 2)
    with pytest.raises(ValueError):
        roi_align(feature, [torch.zeros(3, 5)], 2)
    with pytest.raises(ValueError):
        roi_align(feature[0], torch.zeros(1, 5), 2)
    with pytest.raises(ValueError):
        roi_align(feature, torch.zeros(1, 5), 0)
    with pytest.raises(ValueError):
        roi_align(feature, torch.zeros(1, 5), (2, 2, 2))


@cuda
def test_cuda_matches_reference():
    feature = torch.randn(2, 2, 6, 7, generator=torch.Generator().manual_seed(0))
    rois = random_rois(8, 2, 6, 7, 0.5, 0, torch.float32)
    for sampling, aligned in [(0, False), (2, True)]:
        out = roi_align(feature.cuda(), rois.cuda(), (2, 3), 0.5, sampling, aligned)
        assert out.device.type == "cuda"
        torch.testing.assert_close(
            out.cpu().double(),
            expected(feature, rois, (2, 3), 0.5, sampling, aligned),
            rtol=1e-5,
            atol=1e-5,
        )
