import pytest
import reference as ref
import torch

from visdet.ops import batched_nms, nms

THRESHOLDS = (0.0, 0.3, 0.5, 0.7, 1.0)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def random_case(n, seed, canvas=100.0, dtype=torch.float32):
    """Random boxes with some zero-area and border-crossing ones, and tied scores."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * canvas - 10  # some x1, y1 < 0
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * 30
    wh[torch.rand(n, generator=g) < 0.1, torch.randint(0, 2, (1,), generator=g)] = 0
    boxes = torch.cat([xy, xy + wh], dim=1).to(dtype)
    scores = torch.rand(n, generator=g)
    scores[torch.rand(n, generator=g) < 0.3] = 0.5  # ties: stable order decides
    return boxes, scores


def clustered_case(n_clusters, per_cluster, seed):
    """Many near-duplicates per cluster: heavy suppression inside each 256-box block."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(n_clusters, 1, 2, generator=g) * 200
    jitter = torch.randn(n_clusters, per_cluster, 2, generator=g) * 1.5
    size = 10 + torch.rand(n_clusters, per_cluster, 2, generator=g) * 4
    xy = (centres + jitter).reshape(-1, 2)
    boxes = torch.cat([xy, xy + size.reshape(-1, 2)], dim=1)
    return boxes, torch.rand(len(boxes), generator=g)


def check_nms(boxes, scores, threshold):
    keep = nms(boxes, scores, threshold)
    expected = ref.nms(boxes.double().tolist(), scores.double().tolist(), threshold)
    assert keep.dtype == torch.int64
    assert keep.tolist() == expected
    kept_scores = scores[keep]
    assert bool((kept_scores[:-1] >= kept_scores[1:]).all())
    return keep


@pytest.mark.parametrize("threshold", THRESHOLDS)
@pytest.mark.parametrize("n", [0, 1, 2, 17])
def test_nms_random_small(n, threshold):
    for seed in range(30):
        check_nms(*random_case(n, seed), threshold)


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_nms_random_300(threshold):
    for seed in range(3):
        check_nms(*random_case(300, seed, canvas=300.0), threshold)


@pytest.mark.parametrize("seed", range(2))
def test_nms_random_1000(seed):
    check_nms(*random_case(1000, seed, canvas=400.0), 0.5)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("seed", range(3))
def test_nms_clustered(seed, threshold):
    boxes, scores = clustered_case(8, 80, seed)
    keep = check_nms(boxes, scores, threshold)
    assert len(keep) < len(boxes) // 2


def chain(n, step=0.3):
    """Unit boxes each shifted by ``step``: IoU(i, i+1) = 0.54, IoU(i, i+2) = 0.25."""
    x = torch.arange(n, dtype=torch.float64) * step
    return torch.stack([x, torch.zeros(n), x + 1, torch.ones(n)], dim=1).float()


@pytest.mark.parametrize("order", ["decreasing", "increasing", "random"])
def test_nms_chain_crosses_blocks(order):
    n = 601
    boxes = chain(n)
    scores = {
        "decreasing": -torch.arange(n, dtype=torch.float32),
        "increasing": torch.arange(n, dtype=torch.float32),
        "random": torch.rand(n, generator=torch.Generator().manual_seed(0)),
    }[order]
    keep = check_nms(boxes, scores, 0.5)
    if order == "decreasing":
        assert keep.tolist() == list(range(0, n, 2))
    if order == "increasing":
        assert keep.tolist() == list(range(n - 1, -1, -2))


def test_iou_equal_to_threshold_is_not_suppressed():
    boxes = torch.tensor([[0.0, 0.0, 2.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    scores = torch.tensor([0.9, 0.8])
    assert nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert nms(boxes, scores, 0.49).tolist() == [0]
    # float64: IoU 1/3 against threshold 1/3 is equal, so no suppression either.
    boxes64 = torch.tensor([[0.0, 0.0, 3.0, 1.0], [0.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    assert nms(boxes64, scores, 1 / 3).tolist() == [0, 1]


def test_float32_iou_is_compared_with_the_threshold_as_torchvision_does():
    # torchvision compares the float32 IoU with the float64 threshold. IoU 3/10 rounds up to
    # 0.30000001 in float32, which is > 0.3, so it is suppressed; in float64 it is not.
    boxes = torch.tensor([[0.0, 0.0, 10.0, 1.0], [0.0, 0.0, 3.0, 1.0]])
    scores = torch.tensor([0.9, 0.8])
    assert nms(boxes, scores, 0.3).tolist() == [0]
    assert nms(boxes.double(), scores, 0.3).tolist() == [0, 1]
    assert batched_nms(boxes, scores, torch.zeros(2, dtype=torch.int64), 0.3).tolist() == [0]


def test_degenerate_boxes_never_suppress():
    boxes = torch.tensor([[5.0, 5.0, 5.0, 5.0]] * 3 + [[1.0, 1.0, 1.0, 4.0]] * 2)
    assert nms(boxes, torch.arange(5.0), 0.0).tolist() == [4, 3, 2, 1, 0]


def test_nms_empty():
    keep = nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert keep.dtype == torch.int64 and keep.shape == (0,)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_nms_low_precision_matches_upcast(dtype):
    for seed in range(5):
        boxes, scores = random_case(200, seed, canvas=200.0)
        boxes, scores = boxes.to(dtype), scores.to(dtype)
        keep = nms(boxes, scores, 0.5)
        assert keep.tolist() == nms(boxes.float(), scores.float(), 0.5).tolist()
        assert keep.tolist() == ref.nms(boxes.double().tolist(), scores.double().tolist(), 0.5)


def test_nms_float64():
    for seed in range(5):
        check_nms(*random_case(100, seed, dtype=torch.float64), 0.5)


def check_batched(boxes, scores, idxs, threshold):
    keep = batched_nms(boxes, scores, idxs, threshold)
    expected = ref.batched_nms(
        boxes.double().tolist(), scores.double().tolist(), idxs.tolist(), threshold
    )
    assert keep.dtype == torch.int64
    assert keep.tolist() == expected
    return keep


@pytest.mark.parametrize("threshold", THRESHOLDS)
@pytest.mark.parametrize("n", [0, 1, 2, 17, 300])
def test_batched_nms_random(n, threshold):
    for seed in range(30 if n < 300 else 2):
        boxes, scores = random_case(n, seed, canvas=60.0)
        idxs = torch.randint(0, 4, (n,), generator=torch.Generator().manual_seed(seed))
        check_batched(boxes, scores, idxs, threshold)


@pytest.mark.parametrize("categories", [1, 3, 40])
def test_batched_nms_large_inputs_take_the_per_category_path(categories):
    # 1500 boxes of several categories: NMS runs once per category (cheaper than one masked
    # pass); the result must still equal the reference, in decreasing score order.
    boxes, scores = random_case(1500, 7, canvas=120.0)
    idxs = torch.randint(0, categories, (1500,), generator=torch.Generator().manual_seed(3))
    check_batched(boxes, scores, idxs, 0.5)


def test_batched_nms_categories_never_suppress_each_other():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 4)
    scores = torch.tensor([0.1, 0.4, 0.3, 0.2])
    assert batched_nms(boxes, scores, torch.tensor([0, 1, 2, 3]), 0.0).tolist() == [1, 2, 3, 0]
    assert batched_nms(boxes, scores, torch.tensor([0, 1, 1, 0]), 0.5).tolist() == [1, 3]


def offset_trick_keep(boxes, scores, idxs, threshold):
    """What the usual ``boxes + idxs * (max + 1)`` trick keeps when done in float32."""
    shifted = boxes + (idxs.float() * (boxes.max() + 1))[:, None]
    return ref.nms(shifted.double().tolist(), scores.double().tolist(), threshold)


def test_batched_nms_exact_near_1e5():
    # Per category: a unit box and a copy shifted by 0.3 px (IoU 0.54, kept at 0.6) and a
    # copy shifted by 0.1 px (IoU 0.82, suppressed). At category offsets of ~4e6 the float32
    # spacing is 0.25-0.5 px, so the offset trick would round these shifts away.
    g = torch.Generator().manual_seed(0)
    cats = 40
    base = 1e5 + torch.rand(cats, 2, generator=g, dtype=torch.float64) * 20
    rows = []
    for dx in (0.0, 0.3, 0.1):
        rows.append(
            torch.cat(
                [
                    base + torch.tensor([dx, 0.0], dtype=torch.float64),
                    base + torch.tensor([dx + 1, 1], dtype=torch.float64),
                ],
                dim=1,
            )
        )
    boxes = torch.cat(rows).float()
    idxs = torch.arange(cats).repeat(3)
    scores = torch.cat(
        [torch.full((cats,), 0.9), torch.full((cats,), 0.8), torch.full((cats,), 0.7)]
    )
    keep = check_batched(boxes, scores, idxs, 0.6)
    assert sorted(keep.tolist()) == list(range(2 * cats))
    assert offset_trick_keep(boxes, scores, idxs, 0.6) != keep.tolist()  # the case bites


def test_batched_nms_random_near_1e5_many_categories():
    g = torch.Generator().manual_seed(1)
    n = 400
    xy = 1e5 + torch.rand(n, 2, generator=g, dtype=torch.float64) * 8
    boxes = torch.cat([xy, xy + 0.5 + torch.rand(n, 2, generator=g, dtype=torch.float64) * 3], 1)
    idxs = torch.randint(0, 50, (n,), generator=g)
    scores = torch.rand(n, generator=g)
    for dtype in (torch.float32, torch.float64):
        check_batched(boxes.to(dtype), scores, idxs, 0.5)


def test_batched_nms_empty():
    keep = batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5)
    assert keep.dtype == torch.int64 and keep.shape == (0,)


@pytest.mark.parametrize(
    "idxs, error",
    [
        (torch.zeros(4, dtype=torch.int64), ValueError),
        (torch.zeros(3, 1, dtype=torch.int64), ValueError),
        ([0, 0, 0], ValueError),
        (torch.zeros(3), TypeError),
    ],
)
def test_batched_nms_bad_idxs(idxs, error):
    with pytest.raises(error, match="idxs"):
        batched_nms(torch.zeros(3, 4), torch.zeros(3), idxs, 0.5)


def test_bad_arguments():
    boxes = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="scores"):
        nms(boxes, torch.zeros(4), 0.5)
    with pytest.raises(ValueError, match="scores"):
        batched_nms(boxes, torch.zeros(2), torch.zeros(3, dtype=torch.int64), 0.5)
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        nms(torch.zeros(3, 3), torch.zeros(3), 0.5)
    with pytest.raises(TypeError, match="floating"):
        nms(torch.zeros(3, 4, dtype=torch.int64), torch.zeros(3), 0.5)
    with pytest.raises(TypeError, match="iou_threshold"):
        nms(boxes, torch.zeros(3), float("nan"))


@cuda
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_cuda_matches_reference(threshold):
    for seed in range(5):
        boxes, scores = random_case(500, seed, canvas=200.0)
        idxs = torch.randint(0, 3, (500,), generator=torch.Generator().manual_seed(seed))
        keep = nms(boxes.cuda(), scores.cuda(), threshold)
        assert keep.device.type == "cuda" and keep.dtype == torch.int64
        assert keep.tolist() == ref.nms(boxes.double().tolist(), scores.tolist(), threshold)
        keep = batched_nms(boxes.cuda(), scores.cuda(), idxs.cuda(), threshold)
        assert keep.tolist() == ref.batched_nms(
            boxes.double().tolist(), scores.tolist(), idxs.tolist(), threshold
        )
    boxes, scores = clustered_case(8, 80, 0)
    assert nms(boxes.cuda(), scores.cuda(), 0.5).tolist() == ref.nms(
        boxes.double().tolist(), scores.tolist(), 0.5
    )


@pytest.mark.parametrize("implementation", ["blocked", "single_block"])
def test_every_nms_implementation_matches_the_reference(implementation):
    for n, seed in [(0, 0), (1, 1), (17, 2), (300, 3), (700, 4)]:
        boxes, scores = random_case(n, seed, canvas=300.0)
        keep = nms(boxes, scores, 0.5, implementation=implementation)
        expected = ref.nms(boxes.double().tolist(), scores.double().tolist(), 0.5)
        assert keep.tolist() == expected
    chain, chain_scores = clustered_case(3, 200, 5)
    assert torch.equal(
        nms(chain, chain_scores, 0.3, implementation=implementation), nms(chain, chain_scores, 0.3)
    )


@pytest.mark.parametrize("strategy", ["auto", "mask", "per_category"])
def test_every_batched_nms_strategy_matches_the_reference(strategy):
    for n, seed in [(0, 0), (17, 1), (400, 2)]:
        boxes, scores = random_case(n, seed, canvas=80.0)
        idxs = torch.randint(0, 5, (n,), generator=torch.Generator().manual_seed(seed))
        keep = batched_nms(boxes, scores, idxs, 0.5, strategy=strategy)
        expected = ref.batched_nms(
            boxes.double().tolist(), scores.double().tolist(), idxs.tolist(), 0.5
        )
        assert keep.tolist() == expected


def test_unknown_implementation_names_the_options():
    boxes, scores = random_case(5, 0)
    with pytest.raises(ValueError, match="single_block"):
        nms(boxes, scores, 0.5, implementation="fast")
    with pytest.raises(ValueError, match="per_category"):
        batched_nms(boxes, scores, torch.zeros(5, dtype=torch.int64), 0.5, strategy="fast")
