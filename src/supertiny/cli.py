"""Project CLI: Kedro's own ``kedro run``, with user errors printed as one clear line.

Kedro lets a project's ``cli.py`` override its commands. The override keeps every option of
``kedro run`` and only changes how a fixable error ends the run: a missing file, an unknown
dataset type or a bad setting is reported by its message (which names what and where), not by a
traceback through Kedro's and the libraries' frames. Unexpected errors keep their traceback, and
``SUPERTINY_TRACEBACK=1`` shows it for every error.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from pathlib import Path
from typing import Any

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


def _project_context(env: str | None) -> Any:
    """This project's Kedro context (catalog and parameters) for ``env``."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(Path.cwd())
    return KedroSession.create(env=env, save_on_close=False).load_context()


@cli.command(name="serve")
@click.option("--env", "-e", default=None, help="Kedro configuration environment (conf/<env>).")
@click.option("--model", "model_name", default=None, help="Catalog dataset of the model to serve (default: serving.model).")
@click.option("--host", default=None, help="Address to bind (default: serving.host, 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port (default: serving.port).")
@click.option("--api-key-env", default=None, help="Name of an environment variable holding the key callers must send.")
@click.option("--fallback", is_flag=True, help="Send the requests the model is unsure of to the teacher (serving.fallback).")
def serve(env: str | None, model_name: str | None, host: str | None, port: int | None, api_key_env: str | None, fallback: bool) -> None:
    """Serve a model from the catalog as an OpenAI-compatible chat endpoint with tool calls."""
    import uvicorn

    from supertiny.serving import ServedModel, create_app, served_model_directory, teacher_fallback

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    context = _project_context(env)
    params = context.params
    settings, evaluation = params.get("serving", {}), params["evaluation"]
    model_name = model_name or settings.get("model", "quantized_model")
    host, port = host or settings.get("host", "127.0.0.1"), port or settings.get("port", 8000)
    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise click.ClickException(f"--api-key-env {api_key_env}: that environment variable is not set")
    elif not _is_loopback(host):
        click.echo(f"Warning: serving on {host} without an API key: anyone who can reach it can use it (see --api-key-env)", err=True)
    try:
        model_dir = served_model_directory(context.catalog, model_name)
    except SupertinyError as error:
        raise click.ClickException(str(error)) from None
    try:
        cascade = teacher_fallback(context.catalog, params) if fallback else None
    except SupertinyError as error:  # ConfigError included
        raise click.ClickException(str(error)) from None
    served = ServedModel.from_evaluation(model_name, model_dir.load(), params["student"]["tools_mode"], evaluation)
    served.fallback = cascade
    click.echo(f"Serving {model_name} ({model_dir.path}) on http://{host}:{port}/v1"
               + (f", the teacher below {cascade.signal} confidence {cascade.threshold:.4f}" if cascade else ""))
    uvicorn.run(create_app(served, api_key), host=host, port=port, log_level="info")


@cli.command(name="shadow")
@click.option("--env", "-e", default=None, help="Kedro configuration environment (conf/<env>).")
@click.option("--params", default="", help="Parameter overrides, as for kedro run (e.g. shadow.max_requests=20).")
@click.pass_context
def shadow(ctx: click.Context, env: str | None, params: str) -> None:
    """Replay test requests against the teacher and the served model; writes shadow_report."""
    args = ["--pipelines", "shadow", *(["--env", env] if env else []), *(["--params", params] if params else [])]
    with run.make_context("run", args, parent=ctx) as run_context:  # parses the options as `kedro run` does
        run.invoke(run_context)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
