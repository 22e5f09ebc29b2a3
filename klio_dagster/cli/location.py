"""The code location and environment every command works against.

``KLIO_DEFINITIONS`` names the location: a module (``definitions``,
``examples.harmony``) or a path to a ``.py`` file, as ``dagster dev -m`` and
``dagster dev -f`` take them. The location's feature graph, its asset and its
job are found by introspection (:func:`~klio_dagster.find_feature_location`).
Runs a command executes carry the code location name the UI knows the
location by: ``KLIO_LOCATION_NAME``, else the name ``workspace.yaml`` (in
the working directory) gives that module or file, else Dagster's default
(the module name, or the file's name without ``.py``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import ModuleType

import yaml
from dagster import DagsterInstance, Definitions, JobDefinition

from klio_dagster.core.graph import FeatureGraph
from klio_dagster.errors import LocationError
from klio_dagster.orchestration.compat import EVENT_BATCH_SIZE_VARIABLE, RemoteJobOrigin, remote_job_origin
from klio_dagster.orchestration.factory import FeatureLocation, find_feature_location
from klio_dagster.orchestration.instance import open_instance, write_local_instance_config
from klio_dagster.orchestration.resources import FeatureExecutorResource
from klio_dagster.orchestration.run_health import clean_up_after_dead_runs
from klio_dagster.storage.stores import FeatureStore
from klio_dagster.tiers import Catalogue

DEFAULT_LOCATION = "definitions"
#: Events Dagster may hold before it writes a batch (klio-dagster's batches end sooner: every 100 tracks).
EVENT_BATCH_SIZE = 1_000
#: Where unset locations point, relative to the working directory (the project's `data/`).
LOCAL_DEFAULTS = {
    "DAGSTER_HOME": "dagster_home",
    "KLIO_STORE": "store",
    "KLIO_QUEUE": "queue",
}


@dataclass(frozen=True)
class Location:
    """What a command needs: the definitions, the feature location, the instance and the store."""

    defs: Definitions
    features: FeatureLocation
    job: JobDefinition
    instance: DagsterInstance
    store: FeatureStore
    origin: RemoteJobOrigin

    @property
    def graph(self) -> FeatureGraph:
        return self.features.graph

    @cached_property
    def catalogue(self) -> Catalogue:
        """The location's tier bound to the instance and the store."""
        return self.features.tier.open(self.instance, self.store)

    @property
    def executor_resource(self) -> FeatureExecutorResource:
        """The location's ``klio_executor`` (the embedded default if it names none)."""
        resource = self.defs.resources.get("klio_executor") if self.defs.resources else None
        return resource if isinstance(resource, FeatureExecutorResource) else FeatureExecutorResource()


def prepare_environment() -> None:
    """Point unset locations at ``./data`` (``KLIO_DATA``) and create a local instance if there is none.

    This process's environment is what its Beam workers inherit. A code location
    never does this when it loads; a command does, before it loads one.
    """
    data = Path(os.environ.setdefault("KLIO_DATA", str(Path.cwd() / "data")))
    for name, sub in LOCAL_DEFAULTS.items():
        os.environ.setdefault(name, str(data / sub))
    # Runs store materialisations in batches where the instance can (Postgres): see NativeRecorder.
    os.environ.setdefault(EVENT_BATCH_SIZE_VARIABLE, str(EVENT_BATCH_SIZE))
    write_local_instance_config(Path(os.environ["DAGSTER_HOME"]))


def _import_target(target: str) -> ModuleType:
    path = Path(target)
    if target.endswith(".py"):
        if not path.is_file():
            raise LocationError(f"KLIO_DEFINITIONS={target}: no such file")
        folder = str(path.resolve().parent)
        name = path.stem
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        _add_import_path(folder)
        sys.modules[name] = module  # pickled by reference: Beam workers import it by this name
        spec.loader.exec_module(module)
        return module
    _add_import_path(str(Path.cwd()))
    return importlib.import_module(target)


def _add_import_path(folder: str) -> None:
    """Make modules in ``folder`` importable here (the Beam executor passes the folder on to its workers)."""
    if folder not in sys.path:
        sys.path.insert(0, folder)


def _target(target: str | None) -> str:
    return target or os.environ.get("KLIO_DEFINITIONS") or DEFAULT_LOCATION


def workspace_location_name(target: str, workspace: Path = Path("workspace.yaml")) -> str:
    """The code location name of ``target`` (a module or a ``.py`` path) in the UI: see the module docstring."""
    if os.environ.get("KLIO_LOCATION_NAME"):
        return os.environ["KLIO_LOCATION_NAME"]
    is_file = target.endswith(".py")
    default = Path(target).stem if is_file else target
    try:
        entries = (yaml.safe_load(workspace.read_text()) or {}).get("load_from") or []
    except (OSError, yaml.YAMLError, AttributeError):
        return default
    for entry in entries:
        module = (entry or {}).get("python_module") if isinstance(entry, dict) else None
        file = (entry or {}).get("python_file") if isinstance(entry, dict) else None
        if isinstance(module, str) and not is_file and module == target:
            return target
        if isinstance(module, dict) and not is_file and module.get("module_name") == target:
            return module.get("location_name") or target
        if isinstance(file, dict) and is_file:
            path = workspace.parent / file.get("relative_path", "")
            if path.resolve() == Path(target).resolve():
                return file.get("location_name") or default
    return default


def _origin(target: str, job_name: str) -> RemoteJobOrigin:
    is_file = target.endswith(".py")
    return remote_job_origin(
        workspace_location_name(target),
        job_name,
        module=None if is_file else target,
        python_file=str(Path(target).resolve()) if is_file else None,
        working_directory=str(Path.cwd()),
    )


def load_definitions(target: str | None = None) -> Definitions:
    """The ``Definitions`` of the location ``target`` (default ``KLIO_DEFINITIONS``, then ``definitions``)."""
    target = _target(target)
    try:
        module = _import_target(target)
    except LocationError:
        raise
    except ModuleNotFoundError as exc:
        if exc.name and (target == exc.name or target.startswith(f"{exc.name}.")):
            raise LocationError(
                f"KLIO_DEFINITIONS={target}: no module {exc.name!r} here ({Path.cwd()}); "
                "give a module importable from this folder or a path to a .py file"
            ) from None
        raise LocationError(f"KLIO_DEFINITIONS={target} failed to import: {type(exc).__name__}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a broken location is the user's code: one line, exit 2
        raise LocationError(f"KLIO_DEFINITIONS={target} failed to load: {type(exc).__name__}: {exc}") from None
    found = [v for v in vars(module).values() if isinstance(v, Definitions)]
    if len(found) != 1:
        what = "no Definitions" if not found else f"{len(found)} Definitions objects"
        raise LocationError(f"KLIO_DEFINITIONS={target} defines {what}: it must define exactly one (usually `defs`)")
    return found[0]


def load_location(target: str | None = None) -> Location:
    prepare_environment()
    defs = load_definitions(target)
    features, job, defs = find_feature_location(defs)
    try:
        with defs.resources["klio_store"].process_config_and_initialize_cm() as store_resource:
            store = store_resource.get_store()
    except KeyError:
        raise LocationError("the code location has no `klio_store` resource (a FeatureStoreResource)") from None
    instance = open_instance()
    dead, removed = clean_up_after_dead_runs(instance, store)
    if dead or removed:
        print(
            f"note: {len(dead)} runs whose process had died were marked failed, {len(removed)} stale results folders "
            "removed",
            file=sys.stderr,
        )
    return Location(defs, features, job, instance, store, _origin(_target(target), job.name))
