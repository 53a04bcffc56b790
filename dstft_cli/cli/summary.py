"""``dstft summary``: merge the shards' batch summaries into OUT/summary.csv."""

from __future__ import annotations

import click

from .options import CONTEXT_SETTINGS, finish


@click.command("summary", context_settings=CONTEXT_SETTINGS)
@click.argument("out", type=click.Path(exists=True, file_okay=False), metavar="OUT")
@click.option("--quiet", "-q", is_flag=True, help="No report line.")
def summary(out, quiet):
    """Merge OUT/summary.K-of-N.csv (one per --shard) into OUT/summary.csv (and OUT/index.html).

    Rows of results whose shard summary is missing are rebuilt from their params.json; missing
    parts are named. Safe to run again after more shards finished.

    \b
    Example:
      dstft optimize sample_data/fsdd --shard 1/2 -o runs
      dstft optimize sample_data/fsdd --shard 2/2 -o runs
      dstft summary runs
    """
    from .. import runs

    finish(runs.merge_summaries, out, quiet)
