import pytest
import reference as ref
import torch

from visdet.ops import AnchorGenerator, cell_anchors


def test_cell_anchors_hand_values():
    # h = s * sqrt(r), w = s / sqrt(r), corners round(+-w/2, +-h/2).
    expected = [[-23.0, -11.0, 23.0, 11.0], [-16.0, -16.0, 16.0, 16.0], [-11.0, -23.0, 11.0, 23.0]]
    assert cell_anchors((32,), (0.5, 1.0, 2.0)).tolist() == expected
    assert ref.cell_anchors((32,), (0.5, 1.0, 2.0)) == expected


def test_cell_anchor_order_ratio_slowest_size_fastest():
    sizes, ratios = (16, 32, 128), (0.5, 2.0)
    anchors = cell_anchors(sizes, ratios)
    assert anchors.tolist() == ref.cell_anchors(sizes, ratios)
    assert anchors[:3].tolist() == [
        [-11.0, -6.0, 11.0, 6.0],
        [-23.0, -11.0, 23.0, 11.0],
        [-91.0, -45.0, 91.0, 45.0],
    ]


def test_grid_on_2x3_level():
    gen = AnchorGenerator(sizes=((32,),), aspect_ratios=(0.5, 1.0, 2.0))
    (anchors,) = gen((32, 48), [(2, 3)])  # strides 16 x 16
    base = torch.tensor(
        [[-23.0, -11.0, 23.0, 11.0], [-16.0, -16.0, 16.0, 16.0], [-11.0, -23.0, 11.0, 23.0]]
    )
    want = torch.cat(
        [base + torch.tensor([16.0 * x, 16.0 * y] * 2) for y in range(2) for x in range(3)]
    )
    assert anchors.shape == (18, 4)
    assert anchors.tolist() == want.tolist()


def test_counts_order_and_strides_over_levels():
    sizes = ((16, 24), (64,), (128,))
    ratios = ((0.5, 1.0, 2.0), (1.0,), (0.5, 2.0))
    gen = AnchorGenerator(sizes, ratios)
    assert gen.num_anchors_per_location() == [6, 1, 2]
    feature_sizes = [(13, 8), (4, 4), (1, 3)]
    anchors = gen((100, 96), feature_sizes)
    # strides = image_size // feature_size per axis: (7, 12), (25, 24), (100, 32).
    strides = [(7, 12), (25, 24), (100, 32)]
    assert [len(a) for a in anchors] == [13 * 8 * 6, 4 * 4 * 1, 1 * 3 * 2]
    for a, s, r, (fh, fw), (sy, sx) in zip(anchors, sizes, ratios, feature_sizes, strides):
        assert a.dtype == torch.float32
        assert a.tolist() == ref.grid_anchors(s, r, fh, fw, sy, sx)


def test_single_ratio_list_is_shared_and_dtype():
    gen = AnchorGenerator(((32,), (64,)), (0.5, 1.0, 2.0))
    assert gen.num_anchors_per_location() == [3, 3]
    anchors = gen((64, 64), [(2, 2), (1, 1)], dtype=torch.float64)
    assert [a.dtype for a in anchors] == [torch.float64] * 2
    assert anchors[1].tolist() == ref.cell_anchors((64,), (0.5, 1.0, 2.0))


def test_mismatched_levels_raise():
    gen = AnchorGenerator(((32,), (64,)), (1.0,))
    with pytest.raises(ValueError, match="levels"):
        gen((64, 64), [(8, 8)])
    with pytest.raises(ValueError):
        AnchorGenerator(((32,), (64,)), ((1.0,), (1.0,), (1.0,)))
    with pytest.raises(ValueError):
        AnchorGenerator(((32,), ()), (1.0,))


def test_retinanets_anchors_equal_torchvisions():
    """torchvision's RetinaNet anchors (three scales per octave, P3-P7), stored from
    tests/reference_data/make_torchvision_retinanet_anchor_references.py."""
    from pathlib import Path

    refs = torch.load(
        Path(__file__).parents[1] / "reference_data"
        / "torchvision_retinanet_anchor_references.pt",
        weights_only=True,
    )  # fmt: skip
    sizes = [tuple(x * 2 ** (k / 3) for k in range(3)) for x in (32, 64, 128, 256, 512)]
    assert [tuple(int(s) for s in level) for level in sizes] == [tuple(s) for s in refs["sizes"]]
    generator = AnchorGenerator([tuple(s) for s in refs["sizes"]], (0.5, 1.0, 2.0))
    anchors = torch.cat(generator(tuple(refs["image"]), [tuple(f) for f in refs["features"]]))
    assert torch.equal(anchors, refs["anchors"])
