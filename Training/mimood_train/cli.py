"""`mimood-train COMMAND …`: one entry point for the training side; each command is a module's own `main`."""
from __future__ import annotations

import importlib
import sys

# command -> (module, what it does)
COMMANDS = {
    "generate": ("mimood_train.synthetic", "generate the synthetic T2 data set (NIfTI)"),
    "cache": ("mimood_train.data", "preprocess a split of a NIfTI data set into a slice cache"),
    "train": ("mimood_train.train", "train the VQ-VAE, ATD, MVTM, AR or Token-Critic"),
    "checkpoint": ("mimood_train.checkpoint", "export or verify a checkpoint directory"),
    "evaluate": ("mimood_train.evaluate", "evaluate trained runs (reconstruction, Table 1 tokens, λ calibration, Table 2 pixels)"),
}


def usage() -> str:
    lines = ["usage: mimood-train COMMAND [ARGS…]  (COMMAND --help for its arguments)", "", "commands:"]
    lines += [f"  {name:<11} {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] not in COMMANDS:
        print(f"mimood-train: unknown command '{argv[0]}'\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
