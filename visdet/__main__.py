"""``python -m visdet <command> ...``: the same as the ``visdet`` command."""

from visdet.cli import main

main()
