"""Feature extraction runs and feature-map previews for image encoders."""

from visdet.features.extract import extract_features
from visdet.features.preview import preview_features, save_feature_grid

__all__ = ["extract_features", "preview_features", "save_feature_grid"]
