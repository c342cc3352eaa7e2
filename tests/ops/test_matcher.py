import pytest
import torch

from visdet.ops import Matcher


def test_thresholds():
    quality = torch.tensor([[0.9, 0.5, 0.1, 0.2, 0.65, 0.3], [0.1, 0.6, 0.3, 0.2, 0.7, 0.1]])
    matches = Matcher(0.7, 0.3)(quality)
    assert matches.dtype == torch.int64
    # best: 0.9 -> gt 0; 0.6 between; 0.3 == low is between; 0.2 below; 0.7 == high -> gt 1.
    assert matches.tolist() == [0, -2, -2, -1, 1, -2]


def test_equal_thresholds_have_no_between_band():
    quality = torch.tensor([[0.49, 0.5, 0.51]])
    assert Matcher(0.5, 0.5)(quality).tolist() == [-1, 0, 0]


def test_low_quality_matches_restore_best_predictions_with_ties():
    quality = torch.tensor([[0.9, 0.1, 0.2, 0.2], [0.1, 0.4, 0.4, 0.05]])
    assert Matcher(0.7, 0.3)(quality).tolist() == [0, -2, -2, -1]
    # gt 1's best IoU, 0.4, is shared by predictions 1 and 2: both are restored.
    assert Matcher(0.7, 0.3, allow_low_quality_matches=True)(quality).tolist() == [0, 1, 1, -1]


def test_low_quality_match_keeps_the_predictions_own_best_gt():
    # torchvision semantics: a restored prediction gets its own best gt (argmax), which may
    # differ from the gt whose best it is.
    quality = torch.tensor([[0.5, 0.1], [0.4, 0.05]])
    assert Matcher(0.7, 0.6, allow_low_quality_matches=True)(quality).tolist() == [0, -1]


def test_low_quality_ignores_gt_without_any_overlap():
    # A gt whose best IoU is 0 would tie with every prediction; it restores none of them.
    quality = torch.tensor([[0.9, 0.0, 0.2], [0.0, 0.0, 0.0]])
    assert Matcher(0.7, 0.3, allow_low_quality_matches=True)(quality).tolist() == [0, -1, -1]


def test_empty():
    matcher = Matcher(0.7, 0.3, allow_low_quality_matches=True)
    out = matcher(torch.zeros(0, 5))
    assert out.tolist() == [-1] * 5 and out.dtype == torch.int64
    out = matcher(torch.zeros(3, 0))
    assert out.shape == (0,) and out.dtype == torch.int64


def test_bad_arguments():
    with pytest.raises(ValueError):
        Matcher(0.3, 0.7)
    with pytest.raises(ValueError):
        Matcher(0.7, 0.3)(torch.zeros(4))
