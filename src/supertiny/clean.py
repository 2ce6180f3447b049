"""What ``make clean-outputs`` and ``make clean-teacher-cache`` remove, and nothing more.

``outputs``: every file or directory that a pipeline writes, as the catalog of each environment
(``conf/<env>/`` over ``conf/base/``) names the pipelines' outputs, inside the project's
``data/``. Everything else stays: the sources the pipelines only read (``data/01_raw/``, the
demo's and your own), the teacher's response cache (paid responses, not a catalog dataset) and
the MLflow store (the history of runs).

``teacher-cache``: the response cache of each environment (``teacher.cache_dir``, and
``filtering.judge.teacher.cache_dir`` where the judge has its own), after asking; ``--yes``
(``make clean-teacher-cache FORCE=1``) does not ask.

    python -m supertiny.clean outputs [--dry-run]
    python -m supertiny.clean teacher-cache [--yes]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACKAGE = "supertiny"


@dataclass
class Plan:
    """What a clean would remove, and what it leaves alone with the reason."""

    remove: list[Path] = field(default_factory=list)
    kept: list[tuple[Path, str]] = field(default_factory=list)


def project_root() -> Path:
    from kedro.utils import find_kedro_project

    return find_kedro_project(Path.cwd()) or Path(__file__).resolve().parents[2]


def environments(root: Path) -> list[str]:
    """Every folder of ``conf/`` but ``base``: ``local`` (the default run's), ``smoke``, ..."""
    return sorted((path.name for path in (root / "conf").iterdir() if path.is_dir() and path.name != "base"), key=lambda name: name != "local")


def _config(root: Path, env: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The resolved catalog and parameters of an environment, as ``kedro run --env`` sees them."""
    from kedro.config import OmegaConfigLoader

    from supertiny.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(conf_source=str(root / "conf"), env=env, **CONFIG_LOADER_ARGS)
    return loader["catalog"], loader["parameters"]


def _pipeline_datasets() -> tuple[set[str], set[str]]:
    """(datasets some node writes, datasets only read) over every registered pipeline."""
    from kedro.framework.project import configure_project, pipelines
    from kedro.pipeline import Pipeline

    configure_project(PACKAGE)
    everything = sum((pipelines[name] for name in pipelines), Pipeline([]))  # the on-demand ones too
    outputs = everything.all_outputs()
    return outputs, everything.all_inputs() - outputs


def _path(root: Path, config: dict[str, Any]) -> Path | None:
    where = config.get("filepath") or config.get("path")
    if not isinstance(where, str) or "://" in where:
        return None  # in memory, or not on this filesystem
    path = Path(where)
    return (path if path.is_absolute() else root / path).resolve()


def cache_dirs(params: dict[str, Any], root: Path) -> list[Path]:
    teacher = params.get("teacher") or {}
    judge = ((params.get("filtering") or {}).get("judge") or {}).get("teacher") or {}
    dirs = [teacher.get("cache_dir"), judge.get("cache_dir")]
    return [(root / d).resolve() if not Path(d).is_absolute() else Path(d) for d in dirs if d]


def _overlaps(path: Path, other: Path) -> bool:
    return path == other or path in other.parents or other in path.parents


def plan_outputs(root: Path) -> Plan:
    """What ``outputs`` removes: the existing paths of the pipelines' outputs in every environment."""
    outputs, read_only = _pipeline_datasets()
    data = (root / "data").resolve()
    wanted: dict[Path, str] = {}
    protected: dict[Path, str] = {}
    for env in environments(root):
        catalog, params = _config(root, env)
        for name, config in catalog.items():
            path = _path(root, config) if isinstance(config, dict) and "{" not in name else None
            if path is None:
                continue
            if name in outputs:
                wanted.setdefault(path, name)
            elif name in read_only:
                protected[path] = f"{name}, a source the pipelines read"
        for cache in cache_dirs(params, root):
            protected[cache] = "the teacher's response cache (make clean-teacher-cache)"
    plan = Plan()
    for path, name in sorted(wanted.items()):
        # An interrupted model save leaves a sibling with this suffix (ModelDataset).
        for candidate in (path, path.with_name(path.name + ".partial")):
            if not candidate.exists():
                continue
            guard = next((reason for other, reason in protected.items() if _overlaps(candidate, other)), None)
            if guard:
                plan.kept.append((candidate, f"{name} overlaps {guard}"))
            elif data not in candidate.parents:
                plan.kept.append((candidate, f"{name} is outside {data}"))
            else:
                plan.remove.append(candidate)
    return plan


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def clean_outputs(root: Path, dry_run: bool = False) -> Plan:
    plan = plan_outputs(root)
    for path in plan.remove:
        if not dry_run:
            _remove(path)
        print(f"{'would remove' if dry_run else 'removed'} {path.relative_to(root)}")
    for path, reason in plan.kept:
        print(f"kept {path}: {reason}")
    print(f"{len(plan.remove)} pipeline outputs {'to remove' if dry_run else 'removed'}; data/01_raw, the teacher cache and the MLflow store are kept")
    return plan


def clean_teacher_cache(root: Path, yes: bool = False) -> int:
    """Remove every environment's response cache after asking; returns how many responses went."""
    from supertiny.teacher.cache import ResponseCache

    caches = sorted({cache for env in environments(root) for cache in cache_dirs(_config(root, env)[1], root) if cache.exists()})
    entries = {cache: len(ResponseCache(cache)) for cache in caches}
    if not any(entries.values()):
        print("No cached teacher responses")
        return 0
    for cache, count in entries.items():
        print(f"{count} cached teacher responses in {cache}")
    if not yes:
        if not sys.stdin.isatty():
            print("Not removed: these are paid responses. Run `make clean-teacher-cache FORCE=1` to remove them without asking")
            return 0
        answer = input("Remove them? A run after this pays for every response again [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("Kept")
            return 0
    removed = sum(ResponseCache(cache).clear() for cache in caches)
    print(f"Removed {removed} cached teacher responses")
    return removed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m supertiny.clean", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    outputs = commands.add_parser("outputs", help="remove what the pipelines wrote (sources and the teacher cache stay)")
    outputs.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    cache = commands.add_parser("teacher-cache", help="remove the teacher's response cache (asks first)")
    cache.add_argument("--yes", action="store_true", help="do not ask")
    args = parser.parse_args(argv)
    root = project_root()
    if args.command == "outputs":
        clean_outputs(root, args.dry_run)
    else:
        clean_teacher_cache(root, args.yes)


if __name__ == "__main__":
    main()
