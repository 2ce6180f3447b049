"""What the catalog-reading benchmarks share: the project's Kedro context and their JSON output."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def load_context(project: Path, env: str | None, conf_source: str | None = None) -> Any:
    """This project's Kedro context (catalog and parameters) for ``env`` (of ``conf_source``,
    by default the project's conf/)."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project)
    return KedroSession.create(project_path=project, env=env, conf_source=conf_source).load_context()


def write_result(context: Any, project: Path, name: str, payload: dict[str, Any]) -> Path:
    """``payload`` and the command that made it as ``<output_root>/08_reporting/<name>.json``."""
    out = project / context.config_loader["globals"]["output_root"] / "08_reporting" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": " ".join(sys.argv), **payload}, indent=2) + "\n")
    print(f"\nWritten to {out}")
    return out
