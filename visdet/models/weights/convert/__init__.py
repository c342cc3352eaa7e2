"""Converters from foreign checkpoints to visdet parameter names, one file per source and family."""
