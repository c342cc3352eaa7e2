"""Greedy NMS for exported graphs: the same kept indices as visdet.ops.nms / batched_nms, in
eager mode and inside a torch.export program with a dynamic number of boxes."""

import pytest
import torch

from visdet.ops.nms import batched_nms, nms
from visdet.ops.nms_graph import graph_batched_nms, graph_nms


def random_boxes(n, seed, spread=200.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * spread
    wh = torch.rand(n, 2, generator=g) * 60 + 1
    scores = torch.rand(n, generator=g).round(decimals=2)  # many ties
    classes = torch.randint(0, 3, (n,), generator=g)
    return torch.cat([xy, xy + wh], 1), scores, classes


@pytest.mark.parametrize("n", [0, 1, 2, 17, 300, 1100])
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_same_kept_indices_as_the_eager_kernels(n, threshold):
    boxes, scores, classes = random_boxes(n, seed=n)
    assert torch.equal(graph_nms(boxes, scores, threshold), nms(boxes, scores, threshold))
    assert torch.equal(
        graph_batched_nms(boxes, scores, classes, threshold),
        batched_nms(boxes, scores, classes, threshold),
    )


def test_a_long_suppression_chain_needs_many_rounds():
    # box i overlaps only box i + 1 (IoU 0.6): greedy keeps every other box, which the
    # fixed-point iteration reaches only after ~n rounds
    n = 40
    x = torch.arange(n, dtype=torch.float32) * 2.5
    boxes = torch.stack([x, torch.zeros(n), x + 10, torch.full((n,), 10.0)], 1)
    scores = torch.linspace(1.0, 0.1, n)
    kept = graph_nms(boxes, scores, 0.5)
    assert torch.equal(kept, nms(boxes, scores, 0.5))


class BatchedNMS(torch.nn.Module):
    def forward(self, boxes, scores, classes):
        return graph_batched_nms(boxes, scores, classes, 0.5)


def test_exported_program_keeps_the_eager_indices_for_another_box_count():
    boxes, scores, classes = random_boxes(64, seed=0)
    n = torch.export.Dim("n", min=2, max=4096)
    program = torch.export.export(
        BatchedNMS(), (boxes, scores, classes), dynamic_shapes=({0: n}, {0: n}, {0: n})
    )
    for count in (5, 500):
        boxes, scores, classes = random_boxes(count, seed=count)
        got = program.module()(boxes, scores, classes)
        assert torch.equal(got, batched_nms(boxes, scores, classes, 0.5))


def test_onnx_file_keeps_the_eager_indices_and_stops_on_no_boxes():
    """onnxruntime: the kept indices equal the eager ones for 0, 1 and many boxes; with no
    boxes the fixed-point loop must stop (a ReduceMax condition never did: -inf is true)."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    boxes, scores, classes = random_boxes(64, seed=0)
    n = torch.export.Dim("n", min=0, max=4096)
    program = torch.onnx.export(
        BatchedNMS().eval(), (boxes, scores, classes), dynamo=True, verbose=False,
        input_names=["boxes", "scores", "classes"],
        dynamic_shapes=({0: n}, {0: n}, {0: n}),
    )  # fmt: skip
    session = ort.InferenceSession(program.model_proto.SerializeToString())
    for count in (0, 1, 300):
        boxes, scores, classes = random_boxes(count, seed=count)
        feed = {"boxes": boxes.numpy(), "scores": scores.numpy(), "classes": classes.numpy()}
        [got] = session.run(None, feed)
        assert torch.equal(torch.from_numpy(got), batched_nms(boxes, scores, classes, 0.5))
