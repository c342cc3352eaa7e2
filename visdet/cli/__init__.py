"""The ``visdet`` command: one subcommand per tool, each the Hydra app of its module in
``visdet.cli`` (``visdet train a=b`` runs the same app as ``python -m visdet.cli.train a=b``).

    visdet --help                 the subcommands, one line each
    visdet <command> --help       that tool's config groups and options
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# name -> (module whose ``main`` is the tool, one-line description); None = not built yet
COMMANDS: dict[str, tuple[str | None, str]] = {
    "train": ("visdet.cli.train", "train a detector (conf/train.yaml)"),
    "eval": ("visdet.cli.eval", "evaluate a checkpoint or a COCO results file (plots, report)"),
    "predict": ("visdet.cli.predict", "run a trained detector on images"),
    "export": ("visdet.cli.export", "export a detector (ckpt=) or an encoder, with parity checks"),
    "bench": ("visdet.cli.bench", "benchmark components ('bench compare', 'bench report')"),
    "data": (None, "datasets: 'data check', 'data convert', 'data preview'"),
    "train-encoder": ("visdet.cli.train_encoder", "fine-tune an image encoder + linear head"),
    "features": (None, "encoder features: 'features extract' or 'features preview'"),
    "convert-config": (None, "an MMDetection config -> a visdet experiment YAML"),
    "config": (None, "configs: 'config schema' (JSON Schemas for editors), 'config show'"),
}
FEATURE_TOOLS = {
    "extract": "visdet.cli.extract_features",
    "preview": "visdet.cli.preview_features",
}
# ``visdet data check|convert|preview ...``; None = not built yet
DATA_TOOLS: dict[str, str | None] = {
    "check": "visdet.cli.data_check",
    "convert": "visdet.cli.data_convert",
    "preview": "visdet.cli.data_preview",
}
# ``visdet bench compare|report ...``: plain argparse tools on benchmark result files
BENCH_TOOLS = {"compare": "visdet.bench.compare", "report": "visdet.bench.report"}
# ``visdet config schema|show ...``: plain argparse tools on the config groups
CONFIG_TOOLS = {"schema": "visdet.cli.config_schema", "show": "visdet.cli.config_show"}
# plain argparse tools (not Hydra apps): name -> module whose main(argv) returns the status
PLAIN_TOOLS = {"convert-config": "visdet.cli.convert_config"}
# commands whose first argument names a tool of their own
SUB_TOOLS: dict[str, dict[str, str | None]] = {
    "features": FEATURE_TOOLS,
    "data": DATA_TOOLS,
    "config": CONFIG_TOOLS,
}
NOT_BUILT = 2  # exit status of a subcommand whose tool does not exist yet, and of bad usage


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: visdet <command> [group=option ...] [key=value ...]", "", "commands:"]
    for name, (module, description) in COMMANDS.items():
        note = "" if module or name in SUB_TOOLS or name in PLAIN_TOOLS else " (not built yet)"
        lines.append(f"  {name.ljust(width)}  {description}{note}")
    lines += ["", "'visdet <command> --help' shows that tool's config groups and options."]
    return "\n".join(lines)


def _run(module: str, prog: str, args: Sequence[str]) -> None:
    # Hydra reads the command line from sys.argv: hand it the tool's own arguments
    sys.argv = [prog, *args]
    importlib.import_module(module).main()


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        sys.stderr.write(f"visdet: unknown command {name!r}; valid: {', '.join(COMMANDS)}\n")
        sys.exit(NOT_BUILT)
    if name == "config" and rest and rest[0] in CONFIG_TOOLS:  # argparse tools: their status
        sys.exit(importlib.import_module(CONFIG_TOOLS[rest[0]]).main(rest[1:]))
    if name in SUB_TOOLS:  # visdet features extract, visdet data check, ...
        tools, tool = SUB_TOOLS[name], rest[0] if rest else ""
        if tool not in tools:
            sys.stderr.write(f"visdet {name}: expected one of {', '.join(tools)}, got {tool!r}\n")
            sys.exit(NOT_BUILT)
        if tools[tool] is None:
            sys.stderr.write(f"visdet {name} {tool}: not built yet\n")
            sys.exit(NOT_BUILT)
        _run(tools[tool], f"visdet {name} {tool}", rest[1:])
        return
    if name in PLAIN_TOOLS:
        sys.exit(importlib.import_module(PLAIN_TOOLS[name]).main(rest))
    if name == "bench" and rest and rest[0] in BENCH_TOOLS:
        sys.exit(importlib.import_module(BENCH_TOOLS[rest[0]]).main(rest[1:]))
    module = COMMANDS[name][0]
    if module is None:
        sys.stderr.write(f"visdet {name}: not built yet ({COMMANDS[name][1]})\n")
        sys.exit(NOT_BUILT)
    _run(module, f"visdet {name}", rest)
