"""Image encoders: a backbone cut at one stage, exported to files a C++ runtime loads."""

from visdet.models.encoders.general_encoder import GeneralEncoder

__all__ = ["GeneralEncoder"]
