"""A dynamic batch for a one-image ONNX model: the one-image graph becomes the body of an ONNX
``Loop`` over the images.

torch.onnx cannot convert a batch map around the whole detector, so the batch dimension is added
here, at the ONNX level. ``batch_over_images(model)`` takes a model with one input [C, H, W]
(``image``) and returns a model with the input ``images`` [B, C, H, W] whose graph is

    B = Gather(Shape(images), 0)
    boxes, scores, ... = Loop(B) { image = Gather(images, i, axis=0); <one-image graph> }

The one-image outputs are the Loop's scan outputs, stacked along a new first axis: an output of
shape [K, 4] becomes [B, K, 4], a scalar becomes [B]. The one-image graph's initializers move to
the outer graph (the body reads them from the outer scope); its nodes, value infos, the model's
functions, opset imports and metadata are kept. Each image runs alone, so data-dependent sizes
inside never meet across images.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

BATCH_INPUT = "images"
BATCH_DIM = "batch"
BODY_SUFFIX = "_one_image"  # the body's outputs are renamed: the outer graph takes their names


def batch_over_images(model: onnx.ModelProto) -> onnx.ModelProto:
    """A new model with input ``images`` [B, *image] (B dynamic) running ``model`` (one input
    [*image], any number of outputs [*out]) on each image; outputs [B, *out] with the
    one-image model's names and element types. Checked with ``onnx.checker.check_model``."""
    if not isinstance(model, onnx.ModelProto):
        raise TypeError(f"model must be an onnx.ModelProto, got {type(model).__name__}")
    one = model.graph
    initializers = {t.name for t in one.initializer} | {
        t.values.name for t in one.sparse_initializer
    }
    inputs = [i for i in one.input if i.name not in initializers]
    if len(inputs) != 1:
        names = [i.name for i in inputs]
        raise ValueError(f"model must have exactly one (image) input, got {names}")
    if not one.output:
        raise ValueError("model must have at least one output, got none")
    used = _value_names(one)
    if BATCH_INPUT in used:
        raise ValueError(f"model must not use the value name {BATCH_INPUT!r} (the batch input)")
    fresh = _FreshNames(used)
    # Inside the body, values named like the outer outputs get new names (names must be unique
    # across a graph and its subgraphs).
    renames = {o.name: fresh(o.name + BODY_SUFFIX) for o in one.output}
    body = _loop_body(one, inputs[0], renames, fresh)
    shape, zero, batch_size = fresh("images_shape"), fresh("zero"), fresh("batch_size")
    nodes = [
        helper.make_node("Shape", [BATCH_INPUT], [shape]),
        helper.make_node(
            "Constant", [], [zero], value=helper.make_tensor(zero, TensorProto.INT64, [], [0])
        ),
        helper.make_node("Gather", [shape, zero], [batch_size], axis=0),
        helper.make_node("Loop", [batch_size, ""], [o.name for o in one.output], body=body),
    ]
    graph = helper.make_graph(
        nodes,
        one.name or "batched",
        inputs=[_batched(inputs[0], BATCH_INPUT)],
        outputs=[_batched(o, o.name) for o in one.output],
        initializer=[_with_name(t, renames.get(t.name, t.name)) for t in one.initializer],
        sparse_initializer=[_sparse_renamed(t, renames) for t in one.sparse_initializer],
        doc_string=one.doc_string,
    )
    batched = helper.make_model(
        graph,
        opset_imports=list(model.opset_import),
        functions=list(model.functions),
        ir_version=model.ir_version,
        producer_name=model.producer_name,
        producer_version=model.producer_version,
        doc_string=model.doc_string,
    )
    batched.metadata_props.extend(model.metadata_props)
    onnx.checker.check_model(batched)
    return batched


def _loop_body(
    one: onnx.GraphProto,
    image: onnx.ValueInfoProto,
    renames: dict[str, str],
    fresh: _FreshNames,
) -> onnx.GraphProto:
    """The Loop body: (iteration i, cond) -> (cond, *one-image outputs of image i), with the
    values in ``renames`` renamed; initializers stay in the outer graph."""
    iteration, cond_in, cond_out = fresh("i"), fresh("cond"), fresh("cond_out")
    image_name = renames.get(image.name, image.name)
    nodes = [helper.make_node("Gather", [BATCH_INPUT, iteration], [image_name], axis=0)]
    nodes += [_renamed(node, renames) for node in one.node]
    produced = {name for node in one.node for name in node.output}
    outputs = {}
    for out in one.output:
        outputs[out.name] = renames[out.name]
        if out.name not in produced:  # the image or an initializer: a copy made in the body
            outputs[out.name] = fresh(out.name + "_copy")
            nodes.append(helper.make_node("Identity", [renames[out.name]], [outputs[out.name]]))
    nodes.append(helper.make_node("Identity", [cond_in], [cond_out]))
    return helper.make_graph(
        nodes,
        fresh("one_image"),
        inputs=[
            helper.make_tensor_value_info(iteration, TensorProto.INT64, []),
            helper.make_tensor_value_info(cond_in, TensorProto.BOOL, []),
        ],
        outputs=[helper.make_tensor_value_info(cond_out, TensorProto.BOOL, [])]
        + [_with_name(o, outputs[o.name]) for o in one.output],
        value_info=[_with_name(v, renames.get(v.name, v.name)) for v in one.value_info]
        + [_with_name(image, image_name)],
    )


class _FreshNames:
    """``fresh(stem)``: ``stem``, or ``stem_1``, ``stem_2``, ... when taken; never repeats."""

    def __init__(self, used: set[str]) -> None:
        self.used = set(used) | {BATCH_INPUT}

    def __call__(self, stem: str) -> str:
        name, n = stem, 0
        while name in self.used:
            n += 1
            name = f"{stem}_{n}"
        self.used.add(name)
        return name


def _value_names(graph: onnx.GraphProto) -> set[str]:
    """Every value name in ``graph`` and the graphs nested in its nodes' attributes."""
    names = {v.name for v in [*graph.input, *graph.output, *graph.value_info]}
    names |= {t.name for t in graph.initializer}
    for node in graph.node:
        names |= set(node.input) | set(node.output)
        for sub in _subgraphs(node):
            names |= _value_names(sub)
    names.discard("")
    return names


def _renamed(node: onnx.NodeProto, names: dict[str, str]) -> onnx.NodeProto:
    """A copy of ``node`` whose outputs, and inputs (its subgraphs' too), named in ``names``
    are renamed."""
    node = onnx.NodeProto.FromString(node.SerializeToString())
    _rename_values(node, names)
    return node


def _rename_values(node: onnx.NodeProto, names: dict[str, str]) -> None:
    """Rename, in place, the values of ``node`` and of the graphs nested in it."""
    node.input[:] = [names.get(n, n) for n in node.input]
    node.output[:] = [names.get(n, n) for n in node.output]
    for sub in _subgraphs(node):
        for inner in sub.node:
            _rename_values(inner, names)
        for out in sub.output:
            out.name = names.get(out.name, out.name)


def _subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    """The graphs in ``node``'s attributes (If branches, Loop and Scan bodies)."""
    graphs = []
    for attr in node.attribute:
        graphs += [attr.g] if attr.HasField("g") else []
        graphs += list(attr.graphs)
    return graphs


def _with_name(
    value: onnx.ValueInfoProto | onnx.TensorProto, name: str
) -> onnx.ValueInfoProto | onnx.TensorProto:
    """A copy of ``value`` (a ValueInfoProto or TensorProto) named ``name``."""
    renamed = type(value).FromString(value.SerializeToString())
    renamed.name = name
    return renamed


def _sparse_renamed(
    tensor: onnx.SparseTensorProto, names: dict[str, str]
) -> onnx.SparseTensorProto:
    renamed = onnx.SparseTensorProto.FromString(tensor.SerializeToString())
    renamed.values.name = names.get(renamed.values.name, renamed.values.name)
    return renamed


def _batched(value: onnx.ValueInfoProto, name: str) -> onnx.ValueInfoProto:
    """``value``'s tensor type with a leading dynamic ``batch`` dimension, named ``name``."""
    if not value.type.HasField("tensor_type"):
        raise ValueError(f"model input/output {value.name!r} must be a tensor")
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return helper.make_tensor_value_info(name, tensor.elem_type, None)
    dims: list[int | str | None] = [BATCH_DIM]
    for d in tensor.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") else d.dim_param or None)
    return helper.make_tensor_value_info(name, tensor.elem_type, dims)
