"""Embedded, an id column running out is named by the Django model behind its table.

The host's cache_db is SQLite (its own file here, so that no other module sees the row), where
`cache.CacheEntry` keeps its rows: Django's BigAutoField there is `integer PRIMARY KEY
AUTOINCREMENT`, the rowid, whose range ends at 2^63 - 1. The application wrote an entry with an
id near that end; `python -m django serve` with the host's settings must say which model that is.
"""

from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.hostproject.conftest import manage
from tests.serving import Served, serve

ROWID_LIMIT = 2**63 - 1
HIGH_ID = ROWID_LIMIT - 1000

# Run by the host's own code, as its application would: routers send CacheEntry to cache_db.
WRITE_ENTRIES = f"""
from django.utils import timezone
from tests.hostproject.cache.models import CacheEntry
CacheEntry.objects.create(id={HIGH_ID}, key="pinned", value="v", expires_at=timezone.now())
entry = CacheEntry.objects.create(key="next", value="v", expires_at=timezone.now())
print(entry.id, CacheEntry.objects.count())
"""


@pytest.fixture(scope="module")
def service(host_environment, tmp_path_factory) -> Iterator[Served]:
    runtime = tmp_path_factory.mktemp("hostproject-ids")
    environment = {**host_environment, "HOSTPROJECT_CACHE_PATH": str(runtime / "cache.sqlite3")}
    manage(environment, "migrate", "--database", "cache_db")
    # The last line: Django's shell may first say what it imported by itself.
    written = manage(environment, "shell", "-c", WRITE_ENTRIES).splitlines()[-1].split()
    # AUTOINCREMENT carried on from the high id: the next id the application got is one past it.
    assert written == [str(HIGH_ID + 1), "2"]
    with serve(
        environment,
        runtime / "service.log",
        ready_path="/sd",
        settings_module="tests.hostproject.settings",
    ) as served:
        yield served


def headroom_series(text: str) -> dict[tuple[str, str, str], float]:
    return {
        (sample.labels["alias"], sample.labels["table"], sample.labels["model"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "dbhealth_id_headroom_ratio"
    }


def test_the_table_running_out_of_ids_is_named_by_its_model(service):
    status, text = service.get("/metrics")
    assert status == 200, text
    found = {
        (table, model): ratio
        for (alias, table, model), ratio in headroom_series(text).items()
        if alias == "cache_db"
    }
    # 998 ids left of 2^63 - 1: the exact ratio, computed as the exporter does.
    expected = (ROWID_LIMIT - (HIGH_ID + 1)) / ROWID_LIMIT
    assert found[("cache_cacheentry", "cache.CacheEntry")] == expected
    assert 0 < expected < 1.1e-16
    # django_migrations is Django's own table, not a model of the project: no model label.
    assert set(found) == {("cache_cacheentry", "cache.CacheEntry"), ("django_migrations", "")}
    assert found[("django_migrations", "")] > 0.999
