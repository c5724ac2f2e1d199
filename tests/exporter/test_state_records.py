"""Service state records: the JSON the worker processes share, and the copy a round changes."""

from dataclasses import asdict

from exporter.results import (
    AliasState,
    ProjectReading,
    ServiceState,
    Statement,
    UnmanagedTable,
)


def rich_alias() -> AliasState:
    return AliasState(
        up=True,
        probed_at=1700000000.5,
        probe_seconds=0.004,
        failures={"timeout": 2, "auth": 1},
        last_failure={"timeout": 1699999999.0},
        version="15.4",
        connections={"active": 3, "idle": 7},
        connections_max=100,
        replica=False,
        size_bytes=8.5e6,
        size_at=1700000000.0,
        statements=[
            Statement("42", "SELECT $1", 10, 0.5, 0.05, 10),
            Statement("-7", 'UPDATE "t" SET x = $1', 3, 1.5, 0.5, 3),
        ],
        statements_available=True,
        project=ProjectReading(
            migrations_pending=2,
            unmanaged_tables=[UnmanagedTable("shop", "Legacy", "legacy_orders", True)],
        ),
        project_at=1700000000.0,
    )


def test_alias_state_json_equals_asdict_and_keeps_field_order():
    for alias in (rich_alias(), AliasState()):
        data = alias.to_json()
        assert data == asdict(alias)
        assert list(data) == list(asdict(alias))


def test_json_is_a_copy_the_caller_may_change():
    alias = rich_alias()
    data = alias.to_json()
    data["failures"]["timeout"] = 99
    data["statements"][0]["calls"] = 0
    assert alias.failures["timeout"] == 2
    assert alias.statements[0].calls == 10


def test_service_state_survives_the_round_trip():
    state = ServiceState(rounds=7, aliases={"app": rich_alias(), "new": AliasState()})
    assert ServiceState.from_json(state.to_json()) == state


def test_a_round_copy_changes_nothing_that_readers_of_the_original_see():
    original = rich_alias()
    before = original.to_json()
    mine = original.copy()
    mine.up = False
    mine.failures["timeout"] += 1
    mine.last_failure["refused"] = 1.0
    mine.statements = []
    assert original.to_json() == before
    assert mine.project == original.project
