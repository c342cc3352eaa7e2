"""A one-image ONNX model wrapped in an ONNX Loop over the batch: in onnxruntime the batched
model gives the one-image outputs stacked (a hand-made model: closed-form values, a local
function, an If branch that reads an output by name, outputs that are the input or an
initializer), and the exported detector equals the eager detector per image (slow)."""

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from visdet.export.onnx_batch import batch_over_images

ort = pytest.importorskip("onnxruntime")

K = 5
OPSETS = [helper.make_opsetid("", 18), helper.make_opsetid("local", 1)]
SCALE = np.arange(K * 4, dtype=np.float32).reshape(K, 4) / 10
WEIGHT = np.linspace(0.0, 1.0, K, dtype=np.float32)


def square_function() -> onnx.FunctionProto:
    """local.Square(x) = x * x."""
    return helper.make_function(
        "local", "Square", ["x"], ["y"], [helper.make_node("Mul", ["x", "x"], ["y"])], OPSETS[:1]
    )


def one_image_model() -> onnx.ModelProto:
    """image [3, H, W] ->
    boxes [K, 4] = SCALE * max(image) + W,
    scores [K] = WEIGHT * mean(image)^2 (through the local function),
    labels [K] int64 = scores > 0.1,
    num_detections [] int64 = sum(labels) if max(image) > 0 else 0 (an If whose branch reads
    the graph output ``labels`` from the outer scope)."""
    nodes = [
        helper.make_node("ReduceMax", ["image"], ["peak"], keepdims=0),
        helper.make_node("Shape", ["image"], ["shape"]),
        helper.make_node("Constant", [], ["two"], value=helper.make_tensor("", 7, [], [2])),
        helper.make_node("Gather", ["shape", "two"], ["width_int"], axis=0),
        helper.make_node("Cast", ["width_int"], ["width"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["scale", "peak"], ["scaled"]),
        helper.make_node("Add", ["scaled", "width"], ["boxes"]),
        helper.make_node("ReduceMean", ["image"], ["mean"], keepdims=0),
        helper.make_node("Square", ["mean"], ["mean2"], domain="local"),
        helper.make_node("Mul", ["weight", "mean2"], ["scores"]),
        helper.make_node("Constant", [], ["threshold"], value=helper.make_tensor("", 1, [], [0.1])),
        helper.make_node("Greater", ["scores", "threshold"], ["keep"]),
        helper.make_node("Cast", ["keep"], ["labels"], to=TensorProto.INT64),
        helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("", 1, [], [0.0])),
        helper.make_node("Greater", ["peak", "zero"], ["any"]),
        helper.make_node(
            "If",
            ["any"],
            ["num_detections"],
            then_branch=helper.make_graph(
                [helper.make_node("ReduceSum", ["labels"], ["count"], keepdims=0)],
                "then",
                [],
                [helper.make_tensor_value_info("count", TensorProto.INT64, [])],
            ),
            else_branch=helper.make_graph(
                [
                    helper.make_node(
                        "Constant", [], ["none"], value=helper.make_tensor("", 7, [], [0])
                    )
                ],
                "else",
                [],
                [helper.make_tensor_value_info("none", TensorProto.INT64, [])],
            ),
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "one_image",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [3, "h", "w"])],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [K, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [K]),
            helper.make_tensor_value_info("labels", TensorProto.INT64, [K]),
            helper.make_tensor_value_info("num_detections", TensorProto.INT64, []),
        ],
        initializer=[
            onnx.numpy_helper.from_array(SCALE, "scale"),
            onnx.numpy_helper.from_array(WEIGHT, "weight"),
        ],
    )
    model = helper.make_model(graph, opset_imports=OPSETS, functions=[square_function()])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model


def closed_form(image: np.ndarray) -> list[np.ndarray]:
    """The one-image model's outputs computed in numpy, image [3, H, W]."""
    peak = image.max()
    boxes = SCALE * peak + np.float32(image.shape[2])
    scores = WEIGHT * np.float32(image.mean()) ** 2
    labels = (scores > np.float32(0.1)).astype(np.int64)
    count = np.int64(labels.sum() if peak > 0 else 0)
    return [boxes, scores, labels, np.asarray(count)]


def session(model: onnx.ModelProto):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_batched_model_stacks_the_one_image_outputs():
    one = one_image_model()
    batched = batch_over_images(one)
    assert [i.name for i in batched.graph.input] == ["images"]
    assert [o.name for o in batched.graph.output] == ["boxes", "scores", "labels", "num_detections"]
    assert {f.name for f in batched.functions} == {"Square"}
    assert list(batched.opset_import) == list(one.opset_import)
    single, run = session(one), session(batched)
    rng = np.random.default_rng(0)
    for b, (h, w) in [(1, (32, 64)), (2, (64, 32)), (4, (96, 128))]:
        images = rng.random((b, 3, h, w), dtype=np.float32)
        images[-1] = 0.0 if b > 1 else images[-1]  # a blank image: the If's other branch
        out = run.run(None, {"images": images})
        assert [a.shape for a in out] == [(b, K, 4), (b, K), (b, K), (b,)]
        assert out[2].dtype == np.int64 and out[3].dtype == np.int64
        for i, image in enumerate(images):
            per_image = single.run(None, {"image": image})
            for got, want, ref in zip(out, per_image, closed_form(image), strict=True):
                np.testing.assert_array_equal(got[i], want)
                np.testing.assert_allclose(got[i], ref, rtol=1e-6, atol=1e-6)
    assert out[3][-1] == 0 and out[3][0] > 0


def test_batched_model_keeps_the_batch_dimension_dynamic():
    batched = batch_over_images(one_image_model())
    dims = batched.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "h", "w"]
    dims = batched.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", K, 4]
    (loop,) = [n for n in batched.graph.node if n.op_type == "Loop"]
    assert {t.name for t in batched.graph.initializer} == {"scale", "weight"}
    assert loop.output == ["boxes", "scores", "labels", "num_detections"]


def test_an_empty_batch_gives_empty_outputs_of_the_declared_shapes():
    out = session(batch_over_images(one_image_model())).run(
        None, {"images": np.zeros((0, 3, 32, 32), np.float32)}
    )
    assert [a.shape for a in out] == [(0, K, 4), (0, K), (0, K), (0,)]
    assert [a.dtype for a in out] == [np.float32, np.float32, np.int64, np.int64]


def test_outputs_that_are_the_input_or_an_initializer_are_stacked():
    graph = helper.make_graph(
        [],
        "pass_through",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [2, "n"])],
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, [2, "n"]),
            helper.make_tensor_value_info("table", TensorProto.INT64, [3]),
        ],
        initializer=[onnx.numpy_helper.from_array(np.array([4, 5, 6], dtype=np.int64), "table")],
    )
    model = helper.make_model(graph, opset_imports=OPSETS[:1])
    model.ir_version = 10
    images = np.arange(3 * 2 * 7, dtype=np.float32).reshape(3, 2, 7)
    same, table = session(batch_over_images(model)).run(None, {"images": images})
    np.testing.assert_array_equal(same, images)
    np.testing.assert_array_equal(table, np.tile([4, 5, 6], (3, 1)))


def test_bad_models_are_named():
    with pytest.raises(TypeError, match="model must be an onnx.ModelProto"):
        batch_over_images(b"not a model")
    two_inputs = one_image_model()
    two_inputs.graph.input.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, [1]))
    with pytest.raises(ValueError, match=r"exactly one \(image\) input, got \['image', 'x'\]"):
        batch_over_images(two_inputs)
    taken = one_image_model()
    taken.graph.node[0].output[0] = "images"
    with pytest.raises(ValueError, match="must not use the value name 'images'"):
        batch_over_images(taken)


TINY = ["neck.out_channels=32", "model.detector.representation_size=64"]


@pytest.mark.slow
def test_exported_detector_equals_eager_per_image_at_batch_1_2_4(tmp_path):
    from tests.export.test_detector_graph import check_padded, eager
    from visdet.config.presets import build_detector
    from visdet.export.detector_graph import DetectorGraph, export_onnx

    torch.manual_seed(0)
    detector = build_detector("faster_rcnn_r18_fpn", 4, TINY).eval()
    path = tmp_path / "detector.onnx"
    export_onnx(DetectorGraph(detector, max_det=20), torch.rand(3, 150, 190), str(path), (96, 512))
    run = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in run.get_inputs()] == ["images"]
    assert [o.name for o in run.get_outputs()] == ["boxes", "scores", "labels", "num_detections"]
    torch.manual_seed(5)
    for b, (h, w) in [(1, (224, 160)), (2, (100, 131)), (4, (96, 320)), (4, (128, 128))]:
        images = torch.rand(b, 3, h, w)
        images[b // 2] = 0.0 if b > 1 else images[0]  # a blank image inside the batch
        out = [torch.from_numpy(a) for a in run.run(None, {"images": images.numpy()})]
        assert [tuple(t.shape) for t in out] == [(b, 20, 4), (b, 20), (b, 20), (b,)]
        for i, found in enumerate(eager(detector, images)):
            check_padded(tuple(t[i] for t in out), found, 20)
