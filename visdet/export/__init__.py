"""Export encoders to TorchScript / AOTInductor files with a runtime JSON spec, and run them."""

from visdet.export.exporter import ExportVerificationError, export_encoder, format_results
from visdet.export.runner import SpecRunner, load_spec
from visdet.export.spec import ModelSpec, SpecError, read_spec, write_spec

__all__ = [
    "ExportVerificationError",
    "ModelSpec",
    "SpecError",
    "SpecRunner",
    "export_encoder",
    "format_results",
    "load_spec",
    "read_spec",
    "write_spec",
]
