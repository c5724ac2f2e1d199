"""django-prometheus's engines: the probe uses the Django backend they wrap, so the host's own
django_db_* metrics never count dbhealth's queries, connections or errors."""

from dbhealth.configuration.targets import build_target, normalized_settings
from django.db.utils import load_backend
from prometheus_client import REGISTRY

WRAPPED = "django_prometheus.db.backends.postgresql"
HOST_METRICS = (
    "django_db_execute_total",
    "django_db_new_connections_total",
    "django_db_new_connection_errors_total",
)


def host_metrics(alias: str) -> dict[str, float]:
    labels = {"alias": alias, "vendor": "postgresql"}
    return {name: REGISTRY.get_sample_value(name, labels) or 0.0 for name in HOST_METRICS}


def test_the_probe_goes_through_djangos_backend_and_moves_no_host_metric(postgres, make_harness):
    entry = {
        **postgres.django_settings("app", "monitor", postgres.monitor_password),
        "ENGINE": WRAPPED,
    }
    # The wrapper does count what goes through it: the assertion below is not vacuous.
    settings = normalized_settings("control", entry)
    settings["ENGINE"] = WRAPPED
    wrapper = load_backend(WRAPPED).DatabaseWrapper(settings, "control")
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT 1")
    wrapper.close()
    assert host_metrics("control")["django_db_execute_total"] > 0

    harness = make_harness({"instrumented": entry}, refresh_interval=0.0)
    assert harness.targets[0].settings["ENGINE"] == "django.db.backends.postgresql"
    before = host_metrics("instrumented")
    for _ in range(2):
        alias = harness.round().aliases["instrumented"]
        assert alias.up, alias.message
    assert host_metrics("instrumented") == before


def test_every_django_prometheus_engine_maps_to_its_django_backend():
    for vendor in ("postgresql", "mysql", "sqlite3"):
        entry = {"ENGINE": f"django_prometheus.db.backends.{vendor}", "NAME": "x"}
        target = build_target("a", entry, {})
        assert target.settings["ENGINE"] == f"django.db.backends.{vendor}"
        assert target.problem is None


def test_other_third_party_backends_are_kept():
    # A backend dbhealth does not know may change how a connection is made: left as it is.
    entry = {"ENGINE": "tests.no_such_backend", "NAME": "x"}
    assert build_target("a", entry, {}).settings["ENGINE"] == "tests.no_such_backend"
