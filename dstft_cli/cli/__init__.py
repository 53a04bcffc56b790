"""The ``dstft`` command line: the group :func:`main` and its commands, one module each.

The command line is the only layer that imports click. A command parses its options, checks them
(bad values are usage errors, exit status 2) and calls one function of :mod:`dstft_cli.runs` (or
of a task module) through :func:`~dstft_cli.cli.options.finish`; it holds no logic of its own and
no body is longer than 40 lines. Commands over inputs share the options of
:func:`~dstft_cli.cli.options.batch_options` and run on the batch engine
(:mod:`dstft_cli.batch`): one line per bad input, exit status 1, the batch goes on.

Errors become one line on stderr here (:class:`DstftGroup`): usage errors ``Error: … (see
'dstft CMD --help')`` with exit status 2, failures exit status 1, no traceback unless ``--debug``
(or ``DSTFT_DEBUG=1``).

Adding a command
----------------
1. Write ``dstft_cli/cli/<name>.py`` defining one ``@click.command("<name>",
   context_settings=CONTEXT_SETTINGS)`` function named like the module; use the shared options
   of :mod:`dstft_cli.cli.options` (``@batch_options(out_help=...)`` for a command over inputs,
   which hands the function ``settings``) and end with ``finish(runs.<name>, ..., settings)``.
   Import torch and the library inside the function so that ``dstft --help`` stays fast.
2. Add the module's name to :data:`COMMANDS` below (one line).
3. Document it in the README's command section.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

import click

from .. import __version__
from ..batch import one_line
from ..runtime import tune_allocator
from .options import CONTEXT_SETTINGS

__all__ = ["main", "COMMANDS"]

#: The modules of ``dstft_cli.cli`` that each define one command (function named like the module).
COMMANDS = (
    "optimize",
    "scan",
    "apply",
    "plot",
    "synth",
    "track",
    "fit_window",
    "train",
    "reassign",
    "extract",
    "summary",
)


def _debug_requested(args: Sequence[str] | None) -> bool:
    argv = sys.argv[1:] if args is None else list(args)
    return "--debug" in argv or os.environ.get("DSTFT_DEBUG", "") not in ("", "0")


class DstftGroup(click.Group):
    """A click group whose errors are one line: ``Error: <message>`` (no usage block)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        debug = _debug_requested(args)
        tune_allocator()
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            hint = ""
            if exc.ctx is not None:
                hint = f" (see '{exc.ctx.command_path} --help')"
            click.echo(f"Error: {one_line(exc.format_message())}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"Error: {one_line(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except (click.Abort, KeyboardInterrupt):
            click.echo("Aborted.", err=True)
            sys.exit(130)
        except Exception as exc:  # a bug: one line unless --debug
            if debug:
                raise
            click.echo(f"Error: unexpected {type(exc).__name__}: {one_line(exc)} "
                       "(run with --debug for the traceback)", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=DstftGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="dstft")
@click.option("--debug", is_flag=True, hidden=True)
def main(debug: bool) -> None:
    """Differentiable STFT: optimise spectrogram window lengths and frame positions.

    \b
    dstft optimize signal.wav --mode tf      optimise, write dstft_out/signal/
    dstft scan signal.wav                    loss against a constant window length
    dstft apply dstft_out/signal other.wav   reuse saved parameters
    dstft plot dstft_out/signal --format pdf draw a result's figures again
    dstft synth three-components x.wav       the paper's test signals
    """


for _name in COMMANDS:
    main.add_command(getattr(importlib.import_module(f"{__name__}.{_name}"), _name))
