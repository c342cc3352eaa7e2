"""Runs: the one training skeleton (``fit``) with its detector and encoder tasks, resuming,
and how a tool runs and fails (``job``)."""
