"""``visdet config schema [--out DIR]``: JSON Schemas of every config group and of experiment
files, derived from the ``_target_`` signatures and the group files (visdet.config.schema),
for editors: a config file whose header names a schema,

    # @package _global_
    # yaml-language-server: $schema=../../schemas/experiment.schema.json

gets completion, hover documentation and a warning on a misspelt key or a wrong type.

    visdet config schema                      write schemas/ (one file per group, an index)
    visdet config schema --header FILE ...    also put the header line into these files
    visdet config schema --check FILE ...     validate config files (writes nothing)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from visdet.config.schema import build_schemas, config_dir, hydra_groups, package_of
from visdet.config.schema_files import EXPERIMENT, add_header, check_file, write_schemas


def _schema_for(path: Path, conf: Path, out: Path) -> Path:
    """The schema a config file's header should name: its group's, or for an experiment (any
    file with ``# @package _global_``, or outside conf/) experiment.schema.json."""
    resolved = path.resolve()
    if resolved.is_relative_to(conf.resolve()) and resolved.parent != conf.resolve():
        group = resolved.parent.relative_to(conf.resolve()).as_posix()
        package = package_of(path, group)
        if len(package) == 1 and group != "experiment":
            return out / f"{package[0]}.schema.json"
        if package and group != "experiment":
            raise ValueError(f"{path}: its package {'.'.join(package)} has no schema of its own")
    return out / EXPERIMENT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="visdet config schema",
        description="Write JSON Schemas of the config groups for editors (yaml-language-server).",
    )
    parser.add_argument("out_arg", nargs="?", metavar="out=DIR", help="same as --out DIR")
    parser.add_argument("--out", default=None, help="folder to write into (default: schemas)")
    parser.add_argument(
        "--header",
        nargs="+",
        metavar="FILE",
        default=[],
        help="add '# yaml-language-server: $schema=...' to these config files",
    )
    parser.add_argument(
        "--check",
        nargs="+",
        metavar="FILE",
        default=[],
        help="validate these config files against the schemas; write nothing",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.out_arg and not args.out_arg.startswith("out="):
        parser.error(f"expected out=DIR, got {args.out_arg!r}")
    out = Path(args.out or (args.out_arg[4:] if args.out_arg else "schemas"))
    conf = config_dir()
    if args.check:
        return _check(args.check, conf)
    try:
        targets = [(Path(f), _schema_for(Path(f), conf, out)) for f in args.header]
    except ValueError as e:
        sys.stderr.write(f"visdet config schema: {e}\n")
        return 2
    missing = [str(f) for f, _ in targets if not f.is_file()]
    if missing:
        sys.stderr.write(f"visdet config schema: --header: no such file: {missing[0]}\n")
        return 2
    written, warnings = write_schemas(out)
    print(f"wrote {len(written)} files to {out}/:")
    for path in written:
        print(f"  {path.name}")
    for warning in warnings:
        print(f"not checked: {warning}")
    for path, schema in targets:
        print(f"{path}: {add_header(path, schema)}")
    if not targets:
        print(
            f"editors: put '# yaml-language-server: $schema=<path to {out / EXPERIMENT}>' "
            "under '# @package _global_' (or use --header FILE)"
        )
    return 0


def _check(files: list[str], conf: Path) -> int:
    schemas, _ = build_schemas(conf, hydra_groups())
    problems = []
    for name in files:
        if not Path(name).is_file():
            problems.append(f"{name}: no such file")
            continue
        problems += check_file(name, schemas, conf)
    for line in problems:
        print(line)
    print(
        f"checked {len(files)} file{'s' if len(files) != 1 else ''}: "
        + (f"{len(problems)} problems" if problems else "ok")
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
