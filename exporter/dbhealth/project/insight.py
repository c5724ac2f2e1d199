"""What the Django project itself expects of each alias: migrations, routing, unmanaged tables.

Embedded in a host project, the exporter knows its apps, migrations and routers. It reads them
once per process (the project's code does not change under a running process) and compares them
with what each alias holds, using only reads on the probe's own read-only connection: the
django_migrations table is never created, a missing one means nothing has been applied there.

A migration counts as pending on an alias only when it would change that alias: at least one of
its operations is allowed there by the routers' allow_migrate (with the operation's model_name
and hints, as `migrate` asks) and, for model operations, concerns a managed, non-proxy model.
So a migration of unmanaged models, or one the routers send elsewhere, never shows as pending
on an alias that `migrate` is never run on.

Routes are every alias a model's reads (and writes) can go to, not one answer of the routers: a
load-balancing router (django-multidb-router's PinningReplicaRouter) answers db_for_read with a
random replica on each call, and a single answer would pin the model to an arbitrary replica,
a different one in every process. The routers are asked ROUTE_SAMPLES times per model instead.

Where no router answers for a model (no routers, or all return None), Django sends its queries
to `default` unless the code names an alias (`.using("replica")`, `save(using=...)`), which only
the code knows: the route is then NOT_ROUTED, never `default` alone, so that a down replica read
through `.using()` is not shown as breaking nothing. With a single database there is no choice.
"""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, router
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations.base import Operation
from django.db.migrations.operations.models import ModelOperation
from django.db.migrations.recorder import MigrationRecorder
from django.db.migrations.state import ProjectState

from dbhealth.probing.state import ProjectReading, UnmanagedTable

MigrationKey = tuple[str, str]

# Calls of db_for_read (and of db_for_write) per model. A router choosing uniformly among k
# aliases misses one of them in all 64 calls with probability at most k * (1 - 1/k) ** 64:
# 1e-19 for two replicas, 1.6e-11 for three, 4e-8 for four, so every process finds the same set;
# a round-robin router shows every alias of a pool of up to 64. Not covered: a weighted router
# that sends a share of a few percent to an alias (1 % is missed by 64 calls half of the time).
# Bounded cost: 128 router calls per model, once per process.
ROUTE_SAMPLES = 64
# The read_alias or write_alias of a model no router routes (dbhealth_route_info's label value).
NOT_ROUTED = "not routed"


@dataclass(frozen=True)
class OperationTarget:
    """What `migrate` asks the routers about one operation, and whether it touches a table."""

    app_label: str
    hints: tuple[tuple[str, Any], ...]
    changes_schema: bool


@dataclass(frozen=True)
class MigrationNode:
    key: MigrationKey
    replaces: tuple[MigrationKey, ...]
    operations: tuple[OperationTarget, ...]


@dataclass(frozen=True)
class Route:
    app_label: str
    model: str
    read_alias: str
    write_alias: str


@dataclass(frozen=True)
class UnmanagedModel:
    app_label: str
    model: str
    table: str
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class ProjectLayout:
    """The project's migrations and models, read from code once per process."""

    migrations: tuple[MigrationNode, ...]
    routes: tuple[Route, ...]
    unmanaged: tuple[UnmanagedModel, ...]
    # Table name -> "app_label.Model", to name the model behind an id column running out.
    models_by_table: dict[str, str]

    @property
    def empty(self) -> bool:
        return not self.migrations and not self.unmanaged


@cache
def project_layout() -> ProjectLayout:
    """Built on first use, in a thread of its own; cleared with the other cached configuration
    when settings change.

    Routers may keep per-thread state: PinningReplicaRouter sends a thread's reads to the primary
    while that thread is pinned (after a write, or for a request carrying the pin cookie). The map
    must not depend on whether the request that happened to build it was pinned, and must never
    pin or unpin a host's request thread; a fresh thread has no pin and takes none away.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dbhealth-layout") as pool:
        return pool.submit(build_layout).result()


def build_layout() -> ProjectLayout:
    model_routes = routes()
    return ProjectLayout(
        migrations=migration_nodes(MigrationLoader(None, ignore_no_migrations=True)),
        routes=model_routes,
        unmanaged=unmanaged_models(model_routes),
        models_by_table={
            model._meta.db_table: model._meta.label
            for model in apps.get_models(include_auto_created=True)
            if not model._meta.proxy
        },
    )


def model_of_table(table: str) -> str:
    """The model whose table this is ("app_label.Model"), or "" when the project has none."""
    models = project_layout().models_by_table
    return models.get(table) or models.get(table.lower(), "")


def migration_nodes(loader: MigrationLoader) -> tuple[MigrationNode, ...]:
    """Every migration in dependency order, each operation judged against the state before it."""
    graph = loader.graph
    plan: list[MigrationKey] = []
    seen: set[MigrationKey] = set()
    for leaf in sorted(graph.leaf_nodes()):
        for key in graph.forwards_plan(leaf):
            if key not in seen:
                seen.add(key)
                plan.append(key)
    state = ProjectState()
    nodes = []
    for key in plan:
        migration = graph.nodes[key]
        targets = []
        for operation in migration.operations:
            targets.append(operation_target(migration.app_label, operation, state))
            operation.state_forwards(migration.app_label, state)
        nodes.append(
            MigrationNode(
                key=key,
                replaces=tuple(tuple(item) for item in migration.replaces),
                operations=tuple(targets),
            )
        )
    return tuple(nodes)


def operation_target(app_label: str, operation: Operation, state: ProjectState) -> OperationTarget:
    model_name = getattr(operation, "model_name", None)
    if model_name is None and isinstance(operation, ModelOperation):
        model_name = operation.name
    hints = dict(getattr(operation, "hints", None) or {})
    changes_schema = True
    if model_name is not None:
        model_name = model_name.lower()
        hints["model_name"] = model_name
        before = state.models.get((app_label, model_name))
        options = before.options if before is not None else getattr(operation, "options", {})
        changes_schema = options.get("managed", True) and not options.get("proxy", False)
    return OperationTarget(
        app_label=app_label, hints=tuple(sorted(hints.items())), changes_schema=changes_schema
    )


def applies_to(node: MigrationNode, alias: str) -> bool:
    return any(
        target.changes_schema
        and router.allow_migrate(alias, target.app_label, **dict(target.hints))
        for target in node.operations
    )


def pending_migrations(
    layout: ProjectLayout, alias: str, applied: set[MigrationKey]
) -> list[MigrationKey]:
    """Migrations that would change this alias and are not recorded there.

    A squashed migration counts as applied when it, or every migration it replaces, is recorded.
    """
    return [
        node.key
        for node in layout.migrations
        if node.key not in applied
        and not (node.replaces and set(node.replaces) <= applied)
        and applies_to(node, alias)
    ]


def routes() -> tuple[Route, ...]:
    """Where each model's reads and writes can go: routers only, no database. One route per
    (read alias, write alias) pair a model can take, sorted, so every process has the same map."""
    found = []
    for model in sorted(apps.get_models(), key=lambda m: (m._meta.app_label, m.__name__)):
        write_aliases = reachable(routed("db_for_write"), model)
        for read_alias in reachable(routed("db_for_read"), model):
            for write_alias in write_aliases:
                found.append(
                    Route(
                        app_label=model._meta.app_label,
                        model=model.__name__,
                        read_alias=read_alias,
                        write_alias=write_alias,
                    )
                )
    return tuple(found)


def routed(method: str) -> Callable[[type], str]:
    """The routers' `method` (db_for_read or db_for_write) as Django asks them, first answer
    wins, but NOT_ROUTED where none answers and the project has more than one database."""

    def answer(model: type) -> str:
        for candidate in router.routers:
            chosen = getattr(candidate, method, None)
            alias = chosen(model) if chosen is not None else None
            if alias:
                return alias
        return NOT_ROUTED if len(settings.DATABASES) > 1 else DEFAULT_DB_ALIAS

    return answer


def reachable(route: Callable[..., str], model: type) -> tuple[str, ...]:
    """Every alias `route` (db_for_read or db_for_write) answers for `model`, sorted."""
    return tuple(sorted({route(model) for _ in range(ROUTE_SAMPLES)}))


def unmanaged_models(model_routes: tuple[Route, ...]) -> tuple[UnmanagedModel, ...]:
    """Unmanaged models with every alias their reads or writes can go to (`default` for a model
    no router routes: where Django sends it unless the code names another)."""
    aliases: dict[tuple[str, str], set[str]] = {}
    for route in model_routes:
        aliases.setdefault((route.app_label, route.model), set()).update(
            DEFAULT_DB_ALIAS if alias == NOT_ROUTED else alias
            for alias in (route.read_alias, route.write_alias)
        )
    found = []
    for model in apps.get_models():
        meta = model._meta
        if meta.managed or meta.proxy or meta.swapped:
            continue
        found.append(
            UnmanagedModel(
                app_label=meta.app_label,
                model=model.__name__,
                table=meta.db_table,
                aliases=tuple(sorted(aliases[(meta.app_label, model.__name__)])),
            )
        )
    return tuple(sorted(found, key=lambda item: (item.app_label, item.model)))


def read_project(
    wrapper: Any,
    cursor: Any,
    alias: str,
    layout: ProjectLayout | None = None,
    migrations: bool = True,
) -> ProjectReading | None:
    """Two reads on the probe's connection: the table list and, if present and wanted (the
    alias's `migrations` option), django_migrations."""
    layout = layout or project_layout()
    if layout.empty:
        return None
    tables = set(wrapper.introspection.table_names(cursor))
    if wrapper.features.ignores_table_name_case:
        tables = {name.lower() for name in tables}

    def present(table: str) -> bool:
        return (table.lower() if wrapper.features.ignores_table_name_case else table) in tables

    migrations_table = MigrationRecorder.Migration._meta.db_table
    applied: set[MigrationKey] = set()
    if migrations and present(migrations_table):
        quote = wrapper.ops.quote_name
        cursor.execute(f"SELECT {quote('app')}, {quote('name')} FROM {quote(migrations_table)}")
        applied = {(app, name) for app, name in cursor.fetchall()}
    return ProjectReading(
        migrations_pending=len(pending_migrations(layout, alias, applied)) if migrations else None,
        unmanaged_tables=[
            UnmanagedTable(
                app_label=model.app_label,
                model=model.model,
                table=model.table,
                present=present(model.table),
            )
            for model in layout.unmanaged
            if alias in model.aliases
        ],
    )
