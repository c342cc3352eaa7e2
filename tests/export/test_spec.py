"""Tests for the runtime model spec (visdet.export.spec)."""

from __future__ import annotations

import copy
import json

import pytest

from visdet.export.spec import (
    BatchMode,
    ModelSpec,
    PostEncoderStep,
    SpecError,
    TensorSlot,
    WeightsVariant,
    backend_for_path,
    normalize_backend,
    read_spec,
    resolve_weights,
    spec_from_dict,
    spec_to_dict,
    write_spec,
)

DESIGN_EXAMPLE = {
    "model_id": "resnet18_encoder",
    "display_name": "ResNet-18 encoder",
    "weights_path": "encoder.pt2",
    "batch_mode": {"dynamic": {"min": 1, "max": 32}},
    "inputs": [{"name": "image", "shape": [3, 224, 224]}],
    "outputs": [{"name": "features", "shape": [512, 7, 7]}],
    "recommended_post_encoder": "global_avg_pool",
}


def example(**changes) -> dict:
    """A deep copy of the DESIGN example with top-level keys replaced (None deletes)."""
    data = copy.deepcopy(DESIGN_EXAMPLE)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def full_spec() -> ModelSpec:
    """A spec with every optional field set to a non-default value."""
    return ModelSpec(
        model_id="m",
        display_name="Model",
        description="all fields",
        inputs=(
            TensorSlot(
                "image",
                (3, 64, 64),
                description="frames",
                recommended_encoder="image",
                sequence_dim=0,
            ),
            TensorSlot("mask", (1, 64, 64), is_static=True, is_boolean_mask=True),
        ),
        outputs=(TensorSlot("features", (256, 8, 8), recommended_decoder="heatmap"),),
        weights_path="model.pt",
        backend="torchscript",
        batch_mode=BatchMode("fixed", fixed=4),
        weights_variants=(
            WeightsVariant("b1.pt2", 1, label="single", backend="aotinductor"),
            WeightsVariant("b8.pt2", 8),
        ),
        recommended_post_encoder="spatial_point",
        post_encoder=(PostEncoderStep("spatial_point", "bilinear"), PostEncoderStep("x")),
    )


def rejects(data, *fragments: str, source: str = "spec.json") -> str:
    """Assert spec_from_dict rejects ``data`` with a message holding every fragment."""
    with pytest.raises(SpecError) as info:
        spec_from_dict(data, source=source)
    message = str(info.value)
    assert message.startswith(f"{source}: "), message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- parsing -------------------------------------------------------------------------------


def test_design_example_parses():
    spec = spec_from_dict(DESIGN_EXAMPLE)
    assert spec.model_id == "resnet18_encoder"
    assert spec.display_name == "ResNet-18 encoder"
    assert spec.weights_path == "encoder.pt2"
    assert spec.backend == "auto"
    assert spec.batch_mode == BatchMode("dynamic", min=1, max=32)
    assert spec.inputs == (TensorSlot("image", (3, 224, 224)),)
    assert spec.outputs == (TensorSlot("features", (512, 7, 7)),)
    assert spec.recommended_post_encoder == "global_avg_pool"
    assert spec.description == ""
    assert spec.weights_variants == ()
    assert spec.post_encoder == ()


def test_defaults_when_optional_fields_are_missing():
    spec = spec_from_dict(example(weights_path=None, batch_mode=None))
    assert spec.weights_path is None
    assert spec.batch_mode == BatchMode("dynamic", None, 1, 0)
    assert spec.batch_mode.accepts(10_000)


def test_fixed_batch_mode_and_post_encoder_default_interpolation():
    spec = spec_from_dict(example(batch_mode={"fixed": 3}, post_encoder=[{"module": "gap"}]))
    assert spec.batch_mode == BatchMode("fixed", fixed=3)
    assert spec.post_encoder == (PostEncoderStep("gap", "nearest"),)


def test_unknown_top_level_keys_are_ignored():
    assert spec_from_dict(example(future_field={"x": 1})) == spec_from_dict(DESIGN_EXAMPLE)


def test_same_slot_name_in_inputs_and_outputs_is_allowed():
    spec = spec_from_dict(example(outputs=[{"name": "image", "shape": [3, 224, 224]}]))
    assert spec.outputs[0].name == "image"


# --- round trip ----------------------------------------------------------------------------


def test_round_trip_dict():
    for spec in (full_spec(), spec_from_dict(DESIGN_EXAMPLE)):
        assert spec_from_dict(spec_to_dict(spec)) == spec


def test_to_dict_omits_defaults_but_keeps_backend_and_batch_mode():
    data = spec_to_dict(spec_from_dict(example(weights_path=None, batch_mode=None)))
    assert data == {
        "model_id": "resnet18_encoder",
        "display_name": "ResNet-18 encoder",
        "backend": "auto",
        "batch_mode": {"dynamic": {"min": 1, "max": 0}},
        "inputs": [{"name": "image", "shape": [3, 224, 224]}],
        "outputs": [{"name": "features", "shape": [512, 7, 7]}],
        "recommended_post_encoder": "global_avg_pool",
    }


def test_to_dict_writes_set_optional_fields():
    data = spec_to_dict(full_spec())
    assert data["batch_mode"] == {"fixed": 4}
    assert data["inputs"][1] == {
        "name": "mask",
        "shape": [1, 64, 64],
        "is_static": True,
        "is_boolean_mask": True,
    }
    assert data["weights_variants"] == [
        {"path": "b1.pt2", "batch_size": 1, "label": "single", "backend": "aotinductor"},
        {"path": "b8.pt2", "batch_size": 8},
    ]
    assert data["post_encoder"] == [
        {"module": "spatial_point", "interpolation": "bilinear"},
        {"module": "x"},
    ]
    json.dumps(data)  # plain JSON types only


def test_round_trip_file(tmp_path):
    path = tmp_path / "spec.json"
    write_spec(full_spec(), path)
    assert read_spec(path) == full_spec()
    text = path.read_text()
    assert text.endswith("}\n")
    assert text.startswith('{\n  "model_id": "m"')


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "spec.json"
    write_spec(full_spec(), path)
    write_spec(spec_from_dict(DESIGN_EXAMPLE), path)  # overwrite
    assert [p.name for p in tmp_path.iterdir()] == ["spec.json"]
    assert read_spec(path) == spec_from_dict(DESIGN_EXAMPLE)


def test_write_rejects_invalid_spec_and_keeps_old_file(tmp_path):
    path = tmp_path / "spec.json"
    write_spec(full_spec(), path)
    bad = ModelSpec("m", "Model", inputs=(TensorSlot("x", (0,)),), outputs=full_spec().outputs)
    with pytest.raises(SpecError, match=r"inputs\[0\]\.shape\[0\]"):
        write_spec(bad, path)
    assert read_spec(path) == full_spec()
    assert [p.name for p in tmp_path.iterdir()] == ["spec.json"]


def test_read_missing_file_names_path(tmp_path):
    path = tmp_path / "nope.json"
    with pytest.raises(FileNotFoundError, match="nope.json"):
        read_spec(path)


def test_read_invalid_json_gives_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "model_id": "m",\n  oops\n}\n')
    with pytest.raises(SpecError) as info:
        read_spec(path)
    message = str(info.value)
    assert str(path) in message
    assert "line 3, column 3" in message


def test_read_uses_path_as_source(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(example(model_id="")))
    with pytest.raises(SpecError, match=f"^{str(path)}: model_id: "):
        read_spec(path)


# --- rejections ----------------------------------------------------------------------------


@pytest.mark.parametrize("data", [[], "spec", 3, None])
def test_rejects_non_object_top_level(data):
    rejects(data, "(top level)", "expected an object")


@pytest.mark.parametrize("key", ["model_id", "display_name", "inputs", "outputs"])
def test_rejects_missing_required_field(key):
    rejects(example(**{key: None}), f"{key}: required field is missing")


@pytest.mark.parametrize("key", ["model_id", "display_name"])
@pytest.mark.parametrize("value", ["", "   "])
def test_rejects_empty_id_and_display_name(key, value):
    rejects(example(**{key: value}), f"{key}: expected a non-empty string")


def test_rejects_wrong_type_for_string_field():
    rejects(example(model_id=5), "model_id: expected a string, got integer 5")


@pytest.mark.parametrize("key", ["inputs", "outputs"])
def test_rejects_non_list_slots(key):
    rejects(example(**{key: {"name": "x"}}), f"{key}: expected an array, got object")


@pytest.mark.parametrize("key", ["inputs", "outputs"])
def test_rejects_empty_slot_list(key):
    rejects(example(**{key: []}), f"{key}: expected a non-empty array")


def test_rejects_non_object_slot():
    rejects(example(inputs=["image"]), "inputs[0]: expected an object, got string")


@pytest.mark.parametrize("name", ["", " "])
def test_rejects_empty_slot_name(name):
    rejects(
        example(outputs=[{"name": name, "shape": [1]}]), "outputs[0].name: expected a non-empty"
    )


def test_rejects_missing_slot_shape():
    rejects(example(inputs=[{"name": "image"}]), "inputs[0].shape: required field is missing")


def test_rejects_duplicate_slot_name():
    outputs = [{"name": "features", "shape": [1]}, {"name": "features", "shape": [2]}]
    message = rejects(example(outputs=outputs))
    assert message == "spec.json: outputs[1].name: duplicate slot name 'features'"


def test_rejects_empty_shape():
    rejects(example(inputs=[{"name": "image", "shape": []}]), "inputs[0].shape: expected a non-")


@pytest.mark.parametrize(
    "shape, got",
    [("3x224", "string"), ([3, "224"], 'string "224"'), ([3, 2.0], "number 2.0"), ([True], "bool")],
)
def test_rejects_shape_of_wrong_type(shape, got):
    rejects(example(inputs=[{"name": "image", "shape": shape}]), "inputs[0].shape", got)


@pytest.mark.parametrize("dim", [0, -1])
def test_rejects_non_positive_shape_dim(dim):
    inputs = [{"name": "image", "shape": [3, dim]}]
    rejects(example(inputs=inputs), "inputs[0].shape[1]: expected an integer >= 1", f"got {dim}")


@pytest.mark.parametrize(
    "key, value", [("is_static", 1), ("is_boolean_mask", "yes"), ("sequence_dim", True)]
)
def test_rejects_slot_optional_field_of_wrong_type(key, value):
    inputs = [{"name": "image", "shape": [3], key: value}]
    rejects(example(inputs=inputs), f"inputs[0].{key}: expected")


@pytest.mark.parametrize(
    "mode", [{"fixed": 1, "dynamic": {"min": 1}}, {}, {"elastic": {}}, {"Fixed": 2}]
)
def test_rejects_batch_mode_without_exactly_one_known_key(mode):
    rejects(example(batch_mode=mode), "batch_mode: expected exactly one of 'fixed' or 'dynamic'")


def test_rejects_batch_mode_not_object():
    rejects(example(batch_mode="dynamic"), "batch_mode: expected an object")


@pytest.mark.parametrize("fixed", [0, -2])
def test_rejects_fixed_below_one(fixed):
    rejects(example(batch_mode={"fixed": fixed}), "batch_mode.fixed: expected an integer >= 1")


def test_rejects_bool_as_fixed_batch_size():
    rejects(example(batch_mode={"fixed": True}), "batch_mode.fixed: expected an integer, got bool")


def test_rejects_min_below_one():
    mode = {"dynamic": {"min": 0, "max": 4}}
    rejects(example(batch_mode=mode), "batch_mode.dynamic.min: expected an integer >= 1, got 0")


def test_rejects_max_below_min():
    mode = {"dynamic": {"min": 8, "max": 4}}
    rejects(example(batch_mode=mode), "batch_mode.dynamic.max: expected 0 (unlimited) or >= min")


def test_rejects_negative_max():
    mode = {"dynamic": {"min": 1, "max": -1}}
    rejects(example(batch_mode=mode), "batch_mode.dynamic.max: expected an integer >= 0")


def test_rejects_unknown_key_in_dynamic():
    mode = {"dynamic": {"min": 1, "maximum": 4}}
    rejects(example(batch_mode=mode), "batch_mode.dynamic: expected only", "maximum")


def test_rejects_weights_variants_not_list():
    rejects(example(weights_variants={"path": "a.pt"}), "weights_variants: expected an array")


@pytest.mark.parametrize("path", ["", "  "])
def test_rejects_variant_with_empty_path(path):
    variants = [{"path": path, "batch_size": 1}]
    rejects(example(weights_variants=variants), "weights_variants[0].path: expected a non-empty")


def test_rejects_variant_without_path():
    variants = [{"batch_size": 1}]
    rejects(example(weights_variants=variants), "weights_variants[0].path: required field")


@pytest.mark.parametrize("size", [0, -1])
def test_rejects_variant_batch_size_below_one(size):
    variants = [{"path": "a.pt", "batch_size": size}]
    rejects(example(weights_variants=variants), "weights_variants[0].batch_size: expected an int")


def test_rejects_duplicate_variant_batch_size():
    variants = [{"path": "a.pt", "batch_size": 2}, {"path": "b.pt", "batch_size": 2}]
    rejects(example(weights_variants=variants), "weights_variants[1].batch_size: duplicate", "2")


def test_rejects_unknown_post_encoder_interpolation():
    steps = [{"module": "spatial_point", "interpolation": "bicubic"}]
    rejects(example(post_encoder=steps), "post_encoder[0].interpolation", "'bicubic'", "bilinear")


@pytest.mark.parametrize("step", [{}, {"module": ""}, {"module": 3}])
def test_rejects_post_encoder_without_module(step):
    rejects(example(post_encoder=[step]), "post_encoder[0].module")


def test_rejects_empty_weights_path():
    rejects(example(weights_path=""), "weights_path: expected a non-empty string")


def test_rejects_non_string_backend():
    rejects(example(backend=2), "backend: expected a string, got integer 2")


def test_default_source_in_messages():
    with pytest.raises(SpecError, match="^<dict>: model_id: "):
        spec_from_dict(example(model_id=""))


# --- backends ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        ("torchscript", "torchscript"),
        ("TorchScript", "torchscript"),
        ("JIT", "torchscript"),
        ("jit", "torchscript"),
        ("aotinductor", "aotinductor"),
        ("AOTInductor", "aotinductor"),
        ("aoti", "aotinductor"),
        ("Inductor", "aotinductor"),
        ("auto", "auto"),
        ("AUTO", "auto"),
        (None, "auto"),
        ("", "auto"),
        ("onnx", "auto"),
    ],
)
def test_normalize_backend(value, expected):
    assert normalize_backend(value) == expected


def test_spec_backend_is_normalized():
    assert spec_from_dict(example(backend="AOTI")).backend == "aotinductor"
    assert spec_from_dict(example(backend="tensorrt")).backend == "auto"
    variants = [{"path": "a.pt", "batch_size": 1, "backend": "Jit"}]
    assert spec_from_dict(example(weights_variants=variants)).weights_variants[0].backend == (
        "torchscript"
    )


@pytest.mark.parametrize(
    "path, backend, expected",
    [
        ("m.pt", "auto", "torchscript"),
        ("m.PT2", "auto", "aotinductor"),
        ("dir/m.pt2", "auto", "aotinductor"),
        ("m.pt2", "torchscript", "torchscript"),
        ("m.onnx", "aoti", "aotinductor"),
    ],
)
def test_backend_for_path(path, backend, expected):
    assert backend_for_path(path, backend) == expected


@pytest.mark.parametrize("path", ["model.onnx", "model"])
def test_backend_for_path_rejects_unknown_extension_with_auto(path):
    with pytest.raises(SpecError, match=path):
        backend_for_path(path, "auto")


# --- weights resolution --------------------------------------------------------------------


def test_relative_weights_path_is_resolved_against_spec_folder(tmp_path):
    spec_path = tmp_path / "models" / "spec.json"
    write_spec(spec_from_dict(DESIGN_EXAMPLE), spec_path)
    path, backend = resolve_weights(read_spec(spec_path), spec_path)
    assert path == tmp_path / "models" / "encoder.pt2"
    assert backend == "aotinductor"


def test_absolute_weights_path_is_kept(tmp_path):
    weights = tmp_path / "elsewhere" / "model.pt"
    spec = spec_from_dict(example(weights_path=str(weights)))
    path, backend = resolve_weights(spec, tmp_path / "models" / "spec.json")
    assert path == weights
    assert backend == "torchscript"


def test_variant_selected_by_batch_size(tmp_path):
    spec_path = tmp_path / "models" / "spec.json"
    spec = full_spec()  # weights_path model.pt (torchscript); variants b1 (aoti), b8 (no backend)
    assert resolve_weights(spec, spec_path, 1) == (spec_path.parent / "b1.pt2", "aotinductor")
    # the variant without its own backend uses the spec's backend
    assert resolve_weights(spec, spec_path, 8) == (spec_path.parent / "b8.pt2", "torchscript")


def test_falls_back_to_weights_path(tmp_path):
    spec_path = tmp_path / "spec.json"
    expected = (tmp_path / "model.pt", "torchscript")
    assert resolve_weights(full_spec(), spec_path, 3) == expected
    assert resolve_weights(full_spec(), spec_path) == expected


def test_variant_with_auto_backend_resolves_by_extension(tmp_path):
    variants = [{"path": "b2.pt", "batch_size": 2}]
    spec = spec_from_dict(example(weights_variants=variants))
    assert resolve_weights(spec, tmp_path / "spec.json", 2) == (tmp_path / "b2.pt", "torchscript")


def test_error_when_no_weights_match(tmp_path):
    variants = [{"path": "b1.pt2", "batch_size": 1}, {"path": "b4.pt2", "batch_size": 4}]
    spec = spec_from_dict(example(weights_path=None, weights_variants=variants))
    with pytest.raises(SpecError) as info:
        resolve_weights(spec, tmp_path / "spec.json", 2)
    message = str(info.value)
    assert "batch size 2" in message
    assert "[1, 4]" in message
    assert "spec.json" in message


def test_error_when_spec_has_no_weights(tmp_path):
    spec = spec_from_dict(example(weights_path=None))
    with pytest.raises(SpecError, match="no weights_path"):
        resolve_weights(spec, tmp_path / "spec.json")


# --- batch mode ----------------------------------------------------------------------------


def test_batch_mode_fixed():
    mode = BatchMode("fixed", fixed=4)
    assert mode.accepts(4)
    assert not mode.accepts(3)
    assert not mode.accepts(5)
    assert mode.describe() == "fixed batch size 4"


def test_batch_mode_dynamic_unlimited():
    mode = BatchMode("dynamic", None, min=2, max=0)
    assert not mode.accepts(1)
    assert mode.accepts(2)
    assert mode.accepts(1_000_000)
    assert "unlimited" in mode.describe()


def test_batch_mode_dynamic_bounded():
    mode = BatchMode("dynamic", None, min=1, max=32)
    assert mode.accepts(1)
    assert mode.accepts(32)
    assert not mode.accepts(33)
    assert not mode.accepts(0)
    assert mode.describe() == "dynamic batch size 1..32"


def test_batch_mode_rejects_unknown_kind():
    with pytest.raises(SpecError, match="kind"):
        BatchMode("elastic")


def test_model_spec_accepts_lists_for_tuple_fields():
    spec = ModelSpec("m", "M", inputs=[TensorSlot("x", [1, 2])], outputs=[TensorSlot("y", [3])])
    assert spec.inputs == (TensorSlot("x", (1, 2)),)
    assert spec_from_dict(spec_to_dict(spec)) == spec
    assert isinstance(spec_to_dict(spec)["inputs"][0]["shape"], list)
