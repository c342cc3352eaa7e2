import torch

from visdet.models import RPN, RPNHead
from visdet.models.image_batch import ImageBatch
from visdet.ops import AnchorGenerator, box_iou


def batch(sizes, padded=(64, 64)):
    return ImageBatch(torch.zeros(len(sizes), 3, *padded), list(sizes))


def make_rpn(**kw) -> RPN:
    anchors = AnchorGenerator(((16,), (32,)), (0.5, 1.0, 2.0))
    return RPN(RPNHead(8, 3), anchors, **kw)


def feats(batch=2):
    return [torch.rand(batch, 8, 16, 16), torch.rand(batch, 8, 8, 8)]


def test_empty_ground_truth_gives_zero_box_loss_and_finite_objectness():
    rpn = make_rpn().train()
    proposals, losses = rpn(
        feats(), batch([(64, 64), (60, 50)]), [torch.zeros(0, 4), torch.zeros(0, 4)]
    )
    assert losses["loss_rpn_box"].item() == 0.0
    assert torch.isfinite(losses["loss_rpn_cls"]) and losses["loss_rpn_cls"].item() > 0
    sum(losses.values()).backward()
    assert rpn.head.cls_logits.weight.grad is not None
    assert torch.isfinite(rpn.head.bbox_pred.weight.grad).all()


def test_anchor_labels_follow_thresholds_and_low_quality_matches():
    rpn = make_rpn(fg_iou_thresh=0.7, bg_iou_thresh=0.3)
    anchors = torch.tensor(
        [[0.0, 0, 10, 10], [0, 0, 10, 6], [0, 0, 10, 4], [50, 50, 60, 60], [0, 0, 10, 8]]
    )
    gt = [torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[100.0, 100, 104, 130]])]
    labels, matched = rpn.assign_targets(anchors, gt)
    # IoUs with gt0: 1, 0.6, 0.4, 0, 0.8 -> fg, ignore, ignore, bg, fg
    assert labels[0].tolist() == [1, -1, -1, 0, 1]
    assert torch.equal(matched[0][0], gt[0][0])
    # gt1 overlaps no anchor: every anchor is negative (a low-quality match needs IoU > 0)
    assert box_iou(gt[1], anchors).max() == 0
    assert labels[1].tolist() == [0, 0, 0, 0, 0]


def test_proposals_respect_top_n_bounds_and_modes():
    rpn = make_rpn(
        pre_nms_top_n_train=50,
        post_nms_top_n_train=20,
        pre_nms_top_n_test=30,
        post_nms_top_n_test=7,
        nms_thresh=0.9,
    )
    sizes = [(64, 64), (40, 50)]
    rpn.eval()
    with torch.no_grad():
        props, losses = rpn(feats(), batch(sizes))
    assert losses == {}
    for p, (h, w) in zip(props, sizes):
        assert 0 < len(p) <= 7
        assert (p[:, 0] >= 0).all() and (p[:, 2] <= w).all() and (p[:, 3] <= h).all()
        assert ((p[:, 2] - p[:, 0]) >= 1e-3).all()
    rpn.train()
    props, _ = rpn(feats(), batch(sizes), [torch.tensor([[5.0, 5, 30, 30]])] * 2)
    assert all(0 < len(p) <= 20 for p in props)


def test_proposals_follow_objectness_ranking():
    # one level, no NMS interference: the highest-scoring anchor must be the first proposal
    anchors = AnchorGenerator(((16,),), (1.0,))
    rpn = RPN(RPNHead(4, 1), anchors, nms_thresh=1.0, post_nms_top_n_test=5).eval()
    with torch.no_grad():
        rpn.head.bbox_pred.weight.zero_()
        rpn.head.bbox_pred.bias.zero_()
        logits = torch.full((1, 1, 4, 4), -5.0)
        logits[0, 0, 2, 1] = 3.0
        props = rpn.select_proposals(
            rpn.box_coder.decode(torch.zeros(16, 4), anchors((64, 64), [(4, 4)])[0])[None],
            logits.permute(0, 2, 3, 1).reshape(1, -1),
            [16],
            [(64, 64)],
        )
    # anchor at location (y=2, x=1), stride 16: centre (16, 32), size 16
    assert props[0][0].tolist() == [8.0, 24.0, 24.0, 40.0]
