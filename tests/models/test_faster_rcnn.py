import pytest
import torch

from visdet.models import FasterRCNN, faster_rcnn_resnet_fpn


def small_model(num_classes: int = 3, depth: int = 18, norm: str = "frozen_bn") -> FasterRCNN:
    return faster_rcnn_resnet_fpn(
        num_classes,
        depth=depth,
        norm=norm,
        min_size=96,
        max_size=160,
        fpn_channels=32,
        representation_size=64,
        rpn_pre_nms_top_n_train=200,
        rpn_post_nms_top_n_train=100,
        rpn_pre_nms_top_n_test=100,
        rpn_post_nms_top_n_test=50,
        box_batch_size_per_image=64,
    )


def target(boxes, labels):
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


def test_training_losses_and_gradients_for_all_trainable_parameters():
    model = small_model().train()
    images = [torch.rand(3, 90, 120), torch.rand(3, 128, 96)]
    targets = [
        target([[10, 10, 60, 70], [50, 20, 110, 80]], [1, 3]),
        target([[5, 30, 90, 120]], [2]),
    ]
    losses = model(images, targets)
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_box", "loss_cls", "loss_box"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    for name, p in trainable:
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert all(n.startswith(("backbone.conv1", "backbone.bn1", "backbone.layer1")) for n in frozen)


def test_image_without_objects_trains():
    model = small_model().train()
    empty = target([], [])
    losses = model([torch.rand(3, 96, 96)], [empty])
    assert losses["loss_rpn_box"].item() == 0.0 and losses["loss_box"].item() == 0.0
    assert losses["loss_rpn_cls"] > 0 and losses["loss_cls"] > 0
    sum(losses.values()).backward()
    losses = model(
        [torch.rand(3, 96, 96), torch.rand(3, 64, 80)], [empty, target([[3, 3, 40, 50]], [1])]
    )
    assert all(torch.isfinite(v) for v in losses.values())


def test_eval_output_format_in_input_coordinates():
    model = small_model(num_classes=4).eval()
    images = [torch.rand(3, 200, 300), torch.rand(3, 50, 60)]
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2
    for det, img in zip(out, images):
        assert set(det) == {"boxes", "scores", "labels"}
        n = det["boxes"].shape[0]
        assert det["boxes"].shape == (n, 4) and det["scores"].shape == (n,)
        assert det["labels"].dtype == torch.int64 and det["scores"].dtype == torch.float32
        assert n <= 100
        if n:
            assert det["labels"].min() >= 1 and det["labels"].max() <= 4
            assert (det["boxes"][:, 2] <= img.shape[2] + 1e-3).all()
            assert (det["boxes"][:, 3] <= img.shape[1] + 1e-3).all()
            assert (det["boxes"][:, :2] >= 0).all()
            assert ((det["scores"] > 0.05) & (det["scores"] <= 1)).all()


def test_batched_tensor_equals_list_input():
    model = small_model().eval()
    batch = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        a = model(batch)
        b = model(list(batch))
    for x, y in zip(a, b):
        torch.testing.assert_close(x["boxes"], y["boxes"])


def test_overfits_one_image():
    torch.manual_seed(1)
    model = small_model(num_classes=2, norm="bn").train()
    img = torch.zeros(3, 96, 96)
    img[:, 20:70, 30:80] = torch.tensor([1.0, 0.2, 0.2])[:, None, None]
    tgt = [target([[30, 20, 80, 70]], [2])]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    history = []
    for _ in range(30):
        loss = sum(model([img], tgt).values())
        history.append(loss.item())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
    assert sum(history[-5:]) / 5 < 0.4 * sum(history[:3]) / 3, history


@pytest.mark.parametrize(
    "bad,match",
    [
        (lambda: [torch.rand(1, 64, 64)], r"\[3, H, W\]"),
        (lambda: torch.rand(3, 64, 64), r"Tensor\[B, 3, H, W\]"),
        (lambda: [torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)], "floating point"),
    ],
)
def test_bad_images(bad, match):
    model = small_model().eval()
    with pytest.raises((ValueError, TypeError), match=match):
        model(bad())


@pytest.mark.parametrize(
    "targets,match",
    [
        ([target([[10, 10, 5, 20]], [1])], "degenerate"),
        ([target([[1, 1, 5, 5]], [4])], r"1\.\.3"),
        ([target([[1, 1, 5, 5]], [0])], r"1\.\.3"),
        ([{"boxes": torch.rand(2, 5), "labels": torch.tensor([1, 1])}], r"Tensor\[N, 4\]"),
        ([target([[1, 1, 5, 5]], [1])] * 2, "1 images but 2 targets"),
        (
            [{"boxes": torch.tensor([[1.0, 1, 5, 5]]), "labels": torch.tensor([1, 2])}],
            "one per box",
        ),
        (None, "targets are required"),
    ],
)
def test_bad_targets(targets, match):
    model = small_model().train()
    with pytest.raises(ValueError, match=match):
        model([torch.rand(3, 64, 64)], targets)
