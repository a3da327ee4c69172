"""A wf project: find and validate ``wf.toml``, load the user's workflow module.

Config is data (a frozen, picklable ``Project``); importing the user's code is a separate step
(``load_workflows``), done in the process that runs the engine.
"""

from __future__ import annotations

import difflib
import importlib.util
import sys
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from wf.durations import to_seconds
from wf.engine.cron import BadSchedule, check_schedules
from wf.engine.engine import MAX_STEP_LIMIT, EngineSettings, WorkflowSpec
from wf.engine.entrypoint import WorkflowEntrypoint
from wf.engine.flow import FLOW_KEYS, NO_FLOW, FlowControl, FlowError, parse_flow
from wf.engine.limits import DEFAULT_LIMITS, check_identifier
from wf.engine.retention import NO_RETENTION, Retention, parse_retention
from wf.engine.store.location import BadLocation, database_location
from wf.engine.version import version_of_files
from wf.errors import ValidationError, WfError, quote

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

CONFIG_NAME = "wf.toml"
DEV_VARS_NAME = ".dev.vars"
# Never part of a project's sources: state, environments, caches, VCS, and its tests (editing a
# test neither reloads wf dev nor makes a new version; a deploy does not ship them).
IGNORED_DIRS = frozenset(
    {
        ".wf",
        ".git",
        ".hg",
        ".venv",
        "venv",
        "env",
        "__pycache__",
        "node_modules",
        "build",
        "dist",
        "tests",
    }
)


class ProjectError(WfError):
    """wf.toml or the workflow module is wrong; the message names the file and what to fix."""

    code = "project.invalid"


class ModuleLoadError(ProjectError):
    """The workflow module failed to import; ``location`` is ``file:line`` when known."""

    code = "project.import_failed"

    def __init__(self, message: str, location: str | None = None) -> None:
        super().__init__(message)
        self.location = location


@dataclass(frozen=True)
class WorkflowConfig:
    name: str
    binding: str
    class_name: str
    step_limit: int = DEFAULT_LIMITS.steps
    default_retention: Retention = NO_RETENTION
    # Cron expressions (UTC), each firing creating an instance; spaces normalised.
    schedules: tuple[str, ...] = ()
    flow: FlowControl = NO_FLOW  # concurrency, concurrency_key, rate_limit


@dataclass(frozen=True)
class DevConfig:
    host: str = "127.0.0.1"
    port: int = 8787
    state_dir: str = ".wf"


@dataclass(frozen=True)
class EngineConfig:
    concurrency: int = 1000
    retention: str | float = "7 days"  # Cloudflare's default (EngineSettings')
    durability: str = "fsync"
    # A PostgreSQL URL, or a SQLite file's absolute path; None: <state_dir>/wf.db.
    database: str | None = None
    # How long this process's claims outlive its last renewal: after a crash, another process
    # (a restarted wf dev on PostgreSQL) takes its instances over once it lapses.
    lease: float = 30.0


@dataclass(frozen=True)
class Project:
    root: Path
    config_path: Path
    name: str
    main: Path
    workflows: tuple[WorkflowConfig, ...]
    vars: Mapping[str, Any] = field(default_factory=dict)
    dev: DevConfig = DevConfig()
    engine: EngineConfig = EngineConfig()

    @property
    def state_dir(self) -> Path:
        return self.root / self.dev.state_dir

    @property
    def database(self) -> Path:
        """The SQLite file a project uses unless told otherwise."""
        return self.state_dir / "wf.db"

    def store_location(self, given: str | None = None) -> str:
        """The database this project runs on: ``given`` (``--database`` or ``WF_DATABASE_URL``,
        checked by ``database_location``), else wf.toml's ``[engine] database``, else SQLite in
        the state folder."""
        return given or self.engine.database or str(self.database)

    @property
    def main_label(self) -> str:
        try:
            return str(self.main.relative_to(self.root))
        except ValueError:
            return str(self.main)

    def engine_settings(self) -> EngineSettings:
        return EngineSettings(
            concurrency=self.engine.concurrency,
            retention=self.engine.retention,
            lease=self.engine.lease,
        )

    def source_files(self) -> list[Path]:
        """wf.toml and every Python file beside the main module (what a version is made of)."""
        files = [self.config_path]
        files.extend(_python_files(self.main.parent))
        if self.main not in files:
            files.append(self.main)
        return files

    def version_id(self) -> str:
        return version_of_files(self.source_files(), self.root)


def _python_files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.name in IGNORED_DIRS:
            continue
        if path.is_dir() and not path.is_symlink():
            if any(path.glob("pyvenv.cfg")):
                continue
            yield from _python_files(path)
        elif path.suffix == ".py" and path.is_file():
            yield path


def find_config(start: Path | None = None) -> Path | None:
    """The nearest wf.toml in ``start`` or a parent folder."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


# ---- reading and validating wf.toml ---------------------------------------------------------

_TOP_KEYS = ("name", "main", "workflows", "vars", "dev", "engine")
_WORKFLOW_KEYS = (
    "name",
    "binding",
    "class_name",
    "limits",
    "default_retention",
    "schedules",
    *FLOW_KEYS,
)
_DEV_KEYS = ("port", "host", "state_dir")
_ENGINE_KEYS = ("concurrency", "retention", "durability", "database", "lease")


def _default_retention(value: Any, where: str, check: _Checker) -> Retention:
    """``default_retention = { success_retention = "7 days", error_retention = "30 days" }``:
    duration strings only (Cloudflare reads a bare number as milliseconds, wf's other durations
    read one as seconds: a number here would be ambiguous)."""
    place = f"{where}.default_retention"
    if value is None:
        return NO_RETENTION
    if not isinstance(value, dict):
        raise check.fail(
            place,
            'must be a table such as { success_retention = "7 days", error_retention = '
            f'"30 days" }}, got {_show(value)}',
        )
    check.keys(value, ("success_retention", "error_retention"), place)
    for key, raw in value.items():
        if not isinstance(raw, str):
            raise check.fail(
                f"{place}.{key}", f'must be a duration string such as "7 days", got {_show(raw)}'
            )
    try:
        return parse_retention(value, place)
    except ValidationError as exc:
        raise check.fail("", str(exc)) from None


class _Checker:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = path.name

    def fail(self, where: str, problem: str) -> ProjectError:
        if where and not where.isprintable():  # a key with a newline in it, say
            where = quote(where)[1:-1]
        return ProjectError(
            f"{self.label}: {where} {problem}" if where else f"{self.label}: {problem}"
        )

    def keys(self, table: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
        for key in table:
            if key not in allowed:
                hint = _suggest(key, allowed)
                place = f"{where}.{key}" if where else key
                raise self.fail(
                    place, f"is not a known key{hint}; expected one of {', '.join(allowed)}"
                )

    def string(
        self, table: Mapping[str, Any], key: str, where: str, required: bool = True
    ) -> str | None:
        place = f"{where}.{key}" if where else key
        if key not in table:
            if required:
                raise self.fail(place, "is missing")
            return None
        value = table[key]
        if not isinstance(value, str) or not value:
            raise self.fail(place, f"must be a non-empty string, got {_show(value)}")
        return value

    def integer(self, value: Any, place: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(place, f"must be an integer from {low} to {high}, got {_show(value)}")
        return value

    def table(self, data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a table ([{key}]), got {_show(value)}")
        return value


def _show(value: Any) -> str:
    if isinstance(value, str):
        return quote(value)
    return f"{quote(repr(value), 60)[1:-1]} ({type(value).__name__})"


def _suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


MAX_CONFIG_BYTES = 64 * 1024  # a wf.toml is a page; far more is a mistake (or an attack)


def load_project(config_path: Path) -> Project:
    """Read and validate wf.toml. Raises ``ProjectError`` naming the file, key and expectation,
    and nothing else, whatever the file holds."""
    try:
        return _load_project(config_path)
    except ProjectError:
        raise
    except (OSError, ValueError, RecursionError, RuntimeError, MemoryError) as exc:
        name = config_path.name or CONFIG_NAME
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ProjectError(f"{name}: cannot be used ({quote(detail, 120)})") from None


def _read_text(path: Path, limit: int) -> str:
    """A small UTF-8 file, refused before it is read if it is too large."""
    label = path.name
    try:
        size = path.stat().st_size
        if size > limit:
            raise ProjectError(f"{label}: is {size} bytes; the limit is {limit} bytes")
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ProjectError(f"{label}: is not UTF-8 text") from None
    except OSError as exc:
        raise ProjectError(f"{path}: cannot be read ({exc.strerror})") from None


def _load_project(config_path: Path) -> Project:
    config_path = config_path.resolve()
    check = _Checker(config_path)
    text = _read_text(config_path, MAX_CONFIG_BYTES)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise check.fail("", f"is not valid TOML: {exc}") from None
    check.keys(data, _TOP_KEYS, "")
    root = config_path.parent
    name = check.string(data, "name", "")
    assert name is not None
    main_text = check.string(data, "main", "")
    assert main_text is not None
    main = (root / main_text).resolve()
    if main.suffix != ".py":
        raise check.fail("main", f'must be the path of a Python file (.py), got "{main_text}"')
    if not main.is_file():
        raise check.fail("main", f'"{main_text}" does not exist (looked for {main})')

    raw_workflows = data.get("workflows", [])
    if not isinstance(raw_workflows, list) or not raw_workflows:
        raise check.fail(
            "", "needs at least one [[workflows]] entry with name, binding, class_name"
        )
    workflows: list[WorkflowConfig] = []
    seen_names: set[str] = set()
    seen_bindings: set[str] = set()
    for index, entry in enumerate(raw_workflows):
        where = f"workflows[{index}]"
        if not isinstance(entry, dict):
            raise check.fail(where, "must be a table with name, binding and class_name")
        check.keys(entry, _WORKFLOW_KEYS, where)
        wf_name = check.string(entry, "name", where)
        binding = check.string(entry, "binding", where)
        class_name = check.string(entry, "class_name", where)
        assert wf_name is not None and binding is not None and class_name is not None
        try:
            check_identifier(wf_name, "name", DEFAULT_LIMITS.workflow_name_length)
        except ValidationError as exc:
            raise check.fail(f"{where}.name", f"is invalid: {exc}") from None
        if not binding.isidentifier():
            raise check.fail(f"{where}.binding", f'"{binding}" must be a valid Python identifier')
        if not class_name.isidentifier():
            raise check.fail(f"{where}.class_name", f'"{class_name}" must be a class name')
        if wf_name in seen_names:
            raise check.fail(f"{where}.name", f'"{wf_name}" is used by another workflow')
        if binding in seen_bindings:
            raise check.fail(f"{where}.binding", f'"{binding}" is used by another workflow')
        seen_names.add(wf_name)
        seen_bindings.add(binding)
        step_limit = DEFAULT_LIMITS.steps
        if "limits" in entry:
            limits = entry["limits"]
            if not isinstance(limits, dict):
                raise check.fail(f"{where}.limits", "must be a table such as { steps = 10000 }")
            check.keys(limits, ("steps",), f"{where}.limits")
            if "steps" in limits:
                step_limit = check.integer(
                    limits["steps"], f"{where}.limits.steps", 1, MAX_STEP_LIMIT
                )
        schedules: tuple[str, ...] = ()
        if "schedules" in entry:
            try:
                schedules = tuple(c.expression for c in check_schedules(entry["schedules"]))
            except BadSchedule as exc:
                place = f"{where}.schedules" + ("" if exc.index is None else f"[{exc.index}]")
                raise check.fail(f'{place} (workflow "{wf_name}")', exc.problem) from None
        default_retention = _default_retention(entry.get("default_retention"), where, check)
        try:
            flow = parse_flow(entry)
        except FlowError as exc:
            raise check.fail(f'{where}.{exc.key} (workflow "{wf_name}")', exc.problem) from None
        workflows.append(
            WorkflowConfig(
                wf_name,
                binding,
                class_name,
                step_limit,
                default_retention=default_retention,
                schedules=schedules,
                flow=flow,
            )
        )

    variables = dict(check.table(data, "vars"))
    for key in variables:
        if not key.isidentifier():
            raise check.fail(f"vars.{key}", "must be a valid Python identifier")
        if key in seen_bindings:
            raise check.fail(f"vars.{key}", "has the same name as a workflow binding")

    dev_table = check.table(data, "dev")
    check.keys(dev_table, _DEV_KEYS, "dev")
    dev = DevConfig(
        host=check.string(dev_table, "host", "dev", required=False) or DevConfig.host,
        port=check.integer(dev_table.get("port", DevConfig.port), "dev.port", 1, 65535),
        state_dir=check.string(dev_table, "state_dir", "dev", required=False)
        or DevConfig.state_dir,
    )

    engine_table = check.table(data, "engine")
    check.keys(engine_table, _ENGINE_KEYS, "engine")
    durability = engine_table.get("durability", EngineConfig.durability)
    if durability not in ("fsync", "os"):
        raise check.fail("engine.durability", f'must be "fsync" or "os", got {_show(durability)}')
    retention = engine_table.get("retention", EngineConfig.retention)
    try:
        to_seconds(retention, "retention")
    except ValidationError as exc:
        raise check.fail("engine.retention", f"is invalid: {exc}") from None
    engine = EngineConfig(
        concurrency=check.integer(
            engine_table.get("concurrency", EngineConfig.concurrency),
            "engine.concurrency",
            1,
            1_000_000,
        ),
        retention=retention,
        durability=durability,
        database=_database(check, engine_table, root),
        lease=_lease(check, engine_table),
    )
    return Project(
        root=root,
        config_path=config_path,
        name=name,
        main=main,
        workflows=tuple(workflows),
        vars=variables,
        dev=dev,
        engine=engine,
    )


def _database(check: _Checker, engine_table: Mapping[str, Any], root: Path) -> str | None:
    text = check.string(engine_table, "database", "engine", required=False)
    if text is None:
        return None
    try:
        return database_location(text, root)
    except BadLocation as exc:
        raise check.fail("engine.database", str(exc)) from None


MIN_LEASE, MAX_LEASE = 1.0, 3600.0


def _lease(check: _Checker, engine_table: Mapping[str, Any]) -> float:
    value = engine_table.get("lease", EngineConfig.lease)
    try:
        seconds = to_seconds(value, "lease")
    except ValidationError as exc:
        raise check.fail("engine.lease", f"is invalid: {exc}") from None
    if not MIN_LEASE <= seconds <= MAX_LEASE:
        raise check.fail("engine.lease", f"must be from 1 second to 1 hour, got {_show(value)}")
    return seconds


def read_dev_vars(project: Project) -> dict[str, str]:
    """Secrets for ``wf dev`` from ``.dev.vars`` beside wf.toml (dotenv syntax)."""
    path = project.root / DEV_VARS_NAME
    if not path.is_file():
        return {}
    return parse_dotenv(_read_text(path, MAX_CONFIG_BYTES), path.name)


def parse_dotenv(text: str, label: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            # Never quote the line: its value is a secret.
            raise ProjectError(
                f"{label}:{number}: expected KEY=VALUE with KEY a name of letters, digits and _"
            )
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            mark, value = value[0], value[1:-1]
            if mark == '"':
                value = value.replace("\\n", "\n").replace('\\"', '"')
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


# ---- importing the user's module -------------------------------------------------------------


def import_main(project: Project) -> ModuleType:
    """Import the main module with its folder importable. Errors name the file and line."""
    folder = str(project.main.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    module_name = project.main.stem
    spec = importlib.util.spec_from_file_location(module_name, project.main)
    if spec is None or spec.loader is None:
        raise ModuleLoadError(f"{project.main_label}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(module_name, None)
        where = _relative(project, Path(exc.filename or project.main))
        location = f"{where}:{exc.lineno}" if exc.lineno else where
        raise ModuleLoadError(f"{location}: SyntaxError: {exc.msg}", location) from None
    except BaseException as exc:
        sys.modules.pop(module_name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        frame = _location_in_project(project, exc)
        prefix = f"{frame}: " if frame else f"{project.main_label}: "
        raise ModuleLoadError(f"{prefix}{type(exc).__name__}: {exc}", frame) from None
    return module


def _relative(project: Project, path: Path) -> str:
    try:
        return str(path.resolve().relative_to(project.root))
    except ValueError:
        return str(path)


def _location_in_project(project: Project, exc: BaseException) -> str | None:
    """The innermost traceback frame that is in the project's own files."""
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        path = Path(frame.filename)
        try:
            path.resolve().relative_to(project.root)
        except (ValueError, OSError):
            continue
        found = f"{_relative(project, path)}:{frame.lineno}"
    return found


def load_workflows(project: Project, module: ModuleType | None = None) -> list[WorkflowSpec]:
    """Resolve every ``class_name`` in the main module into a ``WorkflowSpec``."""
    module = module if module is not None else import_main(project)
    classes = {
        name: value
        for name, value in vars(module).items()
        if isinstance(value, type) and issubclass(value, WorkflowEntrypoint)
    }
    specs: list[WorkflowSpec] = []
    for index, workflow in enumerate(project.workflows):
        cls = getattr(module, workflow.class_name, None)
        where = f"workflows[{index}].class_name"
        if cls is None:
            hint = _suggest(workflow.class_name, classes or vars(module))
            raise ProjectError(
                f'{CONFIG_NAME}: {where} "{workflow.class_name}" is not defined in '
                f"{project.main_label}{hint}"
            )
        if not (isinstance(cls, type) and issubclass(cls, WorkflowEntrypoint)):
            raise ProjectError(
                f'{CONFIG_NAME}: {where} "{workflow.class_name}" in {project.main_label} is not a '
                "subclass of wf.WorkflowEntrypoint"
            )
        specs.append(
            WorkflowSpec(
                workflow.name,
                cls,
                workflow.binding,
                workflow.step_limit,
                default_retention=workflow.default_retention,
                schedules=workflow.schedules,
                flow=workflow.flow,
            )
        )
    return specs
