"""Hydra finds sweepers only in the ``hydra_plugins`` namespace package: this registers
visdet's Optuna sweeper (the code is in visdet.sweep.optuna_sweeper). Configured by
conf/hydra/sweeper/visdet_optuna.yaml."""

from visdet.sweep.optuna_sweeper import OptunaSweeper


class VisdetOptunaSweeper(OptunaSweeper):
    """``hydra/sweeper=visdet_optuna``: see visdet.sweep.optuna_sweeper.OptunaSweeper."""
