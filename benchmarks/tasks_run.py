"""Run a task command before it is registered on the ``dstft`` group.

    .venv/bin/python benchmarks/tasks_run.py train ../shared/data/fsdd/recordings --config configs/train.toml

is the same as ``dstft train …`` once ``main.add_command`` has been called for the task commands.
"""

import sys

from dstft_cli.cli_tasks import fit_window, track, train

COMMANDS = {"track": track, "fit-window": fit_window, "train": train}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(COMMANDS)}}} ARGS…")
    name = sys.argv[1]
    COMMANDS[name].main(sys.argv[2:], prog_name=f"dstft {name}")
