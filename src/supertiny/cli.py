"""Project CLI: Kedro's own ``kedro run``, with user errors printed as one clear line.

Kedro lets a project's ``cli.py`` override its commands. The override keeps every option of
``kedro run`` and only changes how a fixable error ends the run: a missing file, an unknown
dataset type or a bad setting is reported by its message (which names what and where), not by a
traceback through Kedro's and the libraries' frames. Unexpected errors keep their traceback, and
``SUPERTINY_TRACEBACK=1`` shows it for every error.
"""

from __future__ import annotations

import os

import click
from kedro.framework.cli.project import run as kedro_run
from kedro.io import DatasetError

from supertiny.errors import SupertinyError

USER_ERRORS = (DatasetError, SupertinyError)


@click.group(name="supertiny")
def cli() -> None:
    """Commands of the supertiny project."""


@cli.command(name="run", params=kedro_run.params, help=kedro_run.help)
@click.pass_context
def run(ctx: click.Context, **kwargs) -> None:
    try:
        ctx.invoke(kedro_run, **kwargs)
    except USER_ERRORS as error:
        if os.environ.get("SUPERTINY_TRACEBACK"):
            raise
        cause = error.__cause__ if isinstance(error, DatasetError) and error.__cause__ else None
        message = str(error) if cause is None or str(cause) in str(error) else f"{error}\n{cause}"
        raise click.ClickException(f"{message}\n(set SUPERTINY_TRACEBACK=1 for the full traceback)") from None
