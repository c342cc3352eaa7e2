"""``visdet convert-config path/to/mmdet_config.py``: an MMDetection 2.x / 3.x config ->
a visdet experiment YAML (visdet.migrate; docs/migrating_from_mmdetection.md).

The config and its ``_base_`` files are parsed as data, never imported or run. The YAML goes
to ``<out-dir>/experiment/<name>.yaml``; train with
``visdet train --config-dir <out-dir> experiment=<name>``. Every setting that could not be
carried over is printed with its reason and kept as comments at the end of the file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from visdet.migrate.mmdet_config import ConfigReadError, load_config
from visdet.migrate.mmdet_to_visdet import convert
from visdet.migrate.write_experiment import write_experiment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="visdet convert-config",
        description="Convert an MMDetection config to a visdet experiment (never runs it).",
    )
    parser.add_argument("config", help="an MMDetection Python config (.py)")
    parser.add_argument(
        "--out-dir",
        default="visdet_configs",
        help="config folder to write experiment/<name>.yaml into (default: visdet_configs)",
    )
    parser.add_argument("--name", help="the experiment's name (default: the config's stem)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        conversion = convert(load_config(args.config))
    except (ConfigReadError, ValueError) as e:
        sys.stderr.write(f"convert-config: {e}\n")
        return 1
    name = args.name or Path(args.config).stem
    path = write_experiment(
        conversion, args.config, Path(args.out_dir) / "experiment" / f"{name}.yaml"
    )
    print(f"wrote {path}: {len(conversion.carried)} settings carried over "
          f"({conversion.family}, preset {conversion.preset})")  # fmt: skip
    if conversion.dropped:
        print(f"not carried over ({len(conversion.dropped)}):")
        for key, reason in conversion.dropped:
            print(f"  {key}: {reason}")
    print(f"train: visdet train --config-dir {args.out_dir} experiment={name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
