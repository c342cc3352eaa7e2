"""``visdet config show [overrides ...]``: the composed config as a tree, each value with the
file that set it (a group option, the experiment, train.yaml) or the command-line override
(visdet.config.provenance). Interpolations are shown as written, with their value where it
can be resolved outside a run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hydra.errors import HydraException, OverrideParseException
from omegaconf.errors import OmegaConfBaseException

from visdet.config.provenance import compose_with_sources, render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="visdet config show",
        description="Print the composed config with where each value came from.",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides: group=option key=value")
    parser.add_argument(
        "--config", default="train", help="the app config to compose (train, eval, export, ...)"
    )
    parser.add_argument("--config-dir", help="a folder of your own configs (experiment/...)")
    parser.add_argument("--select", help="print only this node, e.g. model.detector")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    overrides = list(args.overrides)
    if args.config_dir:
        overrides.append(f"hydra.searchpath=[file://{Path(args.config_dir).resolve()}]")
    try:
        composed = compose_with_sources(args.config, overrides)
        sys.stdout.write(render(composed, args.select))
    except (HydraException, OmegaConfBaseException, KeyError, ValueError) as e:
        text = str(e.args[0] if isinstance(e, KeyError) else e).split("Config search path")[0]
        message = " ".join(text.split())
        if isinstance(e, OverrideParseException):
            message = f"cannot parse override {e.override!r}: {message}"
        sys.stderr.write(f"visdet config show: {message}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
