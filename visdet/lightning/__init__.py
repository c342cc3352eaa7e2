"""LightningModules and optimisation schedules."""

from visdet.lightning.detector_module import DetectorModule, NonFiniteLossError
from visdet.lightning.encoder_module import EncoderModule

__all__ = ["DetectorModule", "EncoderModule", "NonFiniteLossError"]
