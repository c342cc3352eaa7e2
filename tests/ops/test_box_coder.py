import math

import pytest
import torch

from visdet.ops import BBOX_XFORM_CLIP, BoxCoder


def random_boxes(n, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * 100 - 20
    wh = 1 + torch.rand(n, 2, generator=g, dtype=torch.float64) * 60
    return torch.cat([xy, xy + wh], dim=1)


def decode_closed_form(delta, ref_box, weights):
    wx, wy, ww, wh = weights
    rw, rh = ref_box[2] - ref_box[0], ref_box[3] - ref_box[1]
    cx = ref_box[0] + rw / 2 + delta[0] / wx * rw
    cy = ref_box[1] + rh / 2 + delta[1] / wy * rh
    w = math.exp(min(delta[2] / ww, math.log(1000 / 16))) * rw
    h = math.exp(min(delta[3] / wh, math.log(1000 / 16))) * rh
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


@pytest.mark.parametrize(
    "weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (2.0, 3.0, 4.0, 7.0)]
)
def test_round_trip(weights):
    coder = BoxCoder(weights)
    boxes, refs = random_boxes(50, 0), random_boxes(50, 1)
    deltas = coder.encode(boxes, refs)
    assert deltas.shape == (50, 4)
    torch.testing.assert_close(coder.decode(deltas, refs), boxes)


def test_hand_computed_deltas():
    ref_box = torch.tensor([[0.0, 0.0, 10.0, 20.0]], dtype=torch.float64)  # c (5, 10), 10x20
    box = torch.tensor([[2.0, 4.0, 22.0, 24.0]], dtype=torch.float64)  # c (12, 14), 20x20
    want = torch.tensor([[0.7, 0.2, math.log(2.0), 0.0]], dtype=torch.float64)
    torch.testing.assert_close(BoxCoder().encode(box, ref_box), want)
    for weights in ((10.0, 10.0, 5.0, 5.0), (2.0, 3.0, 4.0, 7.0)):
        weighted = want * torch.tensor(weights, dtype=torch.float64)
        torch.testing.assert_close(BoxCoder(weights).encode(box, ref_box), weighted)
        torch.testing.assert_close(BoxCoder(weights).decode(weighted, ref_box), box)


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_dw_dh_clamp(weights):
    assert math.isclose(BBOX_XFORM_CLIP, math.log(1000 / 16))
    ref_box = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    deltas = torch.tensor([[0.0, 0.0, 100.0, 1e6]])
    out = BoxCoder(weights).decode(deltas, ref_box)
    # exp(log(1000 / 16)) = 62.5 times the reference width and height, about the same centre.
    torch.testing.assert_close(out, torch.tensor([[5 - 312.5, 10 - 625.0, 5 + 312.5, 10 + 625.0]]))
    assert bool(torch.isfinite(out).all())


def test_decode_per_class_deltas():
    g = torch.Generator().manual_seed(2)
    weights = (10.0, 8.0, 5.0, 4.0)
    refs = random_boxes(6, 3)
    deltas = torch.randn(6, 4 * 3, generator=g, dtype=torch.float64) * 2
    deltas[0, 2] = 50.0  # clamped
    out = BoxCoder(weights).decode(deltas, refs)
    assert out.shape == (6, 12)
    want = [
        [v for c in range(3) for v in decode_closed_form(d[4 * c : 4 * c + 4], r, weights)]
        for d, r in zip(deltas.tolist(), refs.tolist())
    ]
    torch.testing.assert_close(out, torch.tensor(want, dtype=torch.float64))


def test_bad_shapes():
    coder = BoxCoder()
    with pytest.raises(ValueError):
        coder.encode(torch.zeros(3, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError):
        coder.decode(torch.zeros(3, 6), torch.zeros(3, 4))
    with pytest.raises(ValueError):
        BoxCoder((1.0, 1.0, 1.0))


def test_no_boxes_encode_and_decode_to_empty():
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    assert coder.decode(torch.zeros(0, 4), torch.zeros(0, 4)).shape == (0, 4)
    assert coder.decode(torch.zeros(0, 12), torch.zeros(0, 4)).shape == (0, 12)
    assert coder.encode(torch.zeros(0, 4), torch.zeros(0, 4)).shape == (0, 4)
