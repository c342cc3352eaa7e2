"""``python train.py ...`` is ``visdet train ...`` (see visdet/cli/train.py)."""

from visdet.cli.train import main

main()
