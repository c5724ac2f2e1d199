"""The fast exposition writes exactly what prometheus_client writes, for every format it offers."""

import pytest
from dbhealth.exposition.encoding import LineFamily, encode
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Enum, Histogram, Info, Summary
from prometheus_client import exposition as text_exposition
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics import exposition as openmetrics_exposition

PROMETHEUS_2_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
PROMETHEUS_3_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)
TEXT_UTF8_ACCEPT = "text/plain;version=1.0.0;escaping=allow-utf-8"
# What scrapers send: dbhealth writes its own families itself for every one of them.
SCRAPER_ACCEPT_HEADERS = [
    "",
    "*/*",
    PROMETHEUS_2_ACCEPT,
    PROMETHEUS_3_ACCEPT,
    "text/plain;version=0.0.4",
    TEXT_UTF8_ACCEPT,
]
ACCEPT_HEADERS = [
    *SCRAPER_ACCEPT_HEADERS,
    "application/openmetrics-text",
    "application/openmetrics-text;version=0.0.1",
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8",
    "application/openmetrics-text;version=1.0.0;escaping=values",
    "application/openmetrics-text;version=1.0.0;escaping=dots",
    "application/openmetrics-text;version=1.0.0;escaping=unknown",
    "application/openmetrics-text;version=2.0.0;escaping=allow-utf-8",
    "text/plain;version=1.0.0",
    "text/plain;version=1.0.0;escaping=underscores",
    "text/plain;version=1.0.0;escaping=values",
    "text/plain;version=1.0.0;escaping=dots",
]


class Families:
    """dbhealth-like families (the fast path) plus kinds that prometheus_client must write."""

    def __init__(self, values: list[str], help_text: str = 'Help with \\ and \n and "quotes".\''):
        self.values = values
        self.help_text = help_text

    def collect(self):
        up = GaugeMetricFamily("dbhealth_up", self.help_text, labels=["alias", "vendor"])
        failures = CounterMetricFamily("dbhealth_probe_failures", "Failures.", labels=["reason"])
        info = GaugeMetricFamily("dbhealth_statement_info", "Text.", labels=["query", "alias"])
        for index, value in enumerate(self.values):
            up.add_metric([value, "postgresql"], index % 2)
            failures.add_metric([value], index * 3)
            info.add_metric([value, f"a{index}"], 1)
        rounds = CounterMetricFamily("dbhealth_probe_rounds", "Rounds.")
        rounds.add_metric([], 12345678901)
        odd = GaugeMetricFamily("odd", "Special values.", labels=["kind"])
        for kind, value in (("inf", float("inf")), ("nan", float("nan")), ("big", 1.5e300)):
            odd.add_metric([kind], value)
        odd.add_metric(["tiny"], -2.5e-9)
        yield rounds
        yield up
        yield GaugeMetricFamily("dbhealth_empty", "No samples at all.", labels=["alias"])
        yield failures
        yield info
        yield odd
        yield GaugeMetricFamily("colon:name", "A legacy name with a colon.", value=1)
        yield GaugeMetricFamily("with_unit_bytes", "Has a unit.", value=2, unit="bytes")
        yield GaugeMetricFamily("ünicode_name", "Not a legacy name.", value=3)
        yield GaugeMetricFamily("otel.dotted_name", "Not a legacy name either.", value=4)
        utf8_label = GaugeMetricFamily("utf8_label", "Not a legacy label name.", labels=["ålias"])
        utf8_label.add_metric(["app"], 5)
        yield utf8_label


class Combined:
    def __init__(self, *sources) -> None:
        self.sources = sources

    def collect(self):
        for source in self.sources:
            yield from source.collect()


@pytest.fixture(scope="module")
def client_registry() -> CollectorRegistry:
    """Histograms, summaries, info, enums and counters with _created: the library's own kinds."""
    registry = CollectorRegistry()
    histogram = Histogram("requests_seconds", "Latency.", ["view"], registry=registry)
    histogram.labels("metrics").observe(0.2)
    Summary("sizes_bytes", "Sizes.", registry=registry).observe(10)
    Counter("requests", "Requests.", ["method"], registry=registry).labels("GET").inc(3)
    Info("build", "Build.", registry=registry).info({"version": "1.0"})
    Enum("phase", "Phase.", states=["a", "b"], registry=registry).state("b")
    return registry


def expected(registry, accept: str) -> tuple[bytes, str]:
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


@pytest.mark.parametrize("accept", ACCEPT_HEADERS)
def test_every_format_matches_prometheus_client_byte_for_byte(accept, client_registry):
    values = ["app", 'we"ird', "back\\slash", "new\nline", "ünïcödé ☃", ""]
    registry = Combined(Families(values), client_registry)
    assert encode(registry, accept) == expected(registry, accept)


@pytest.mark.parametrize("accept", SCRAPER_ACCEPT_HEADERS)
def test_an_empty_registry_is_written_alike(accept):
    assert encode(Combined(), accept) == expected(Combined(), accept)


@given(values=st.lists(st.text(), max_size=5), help_text=st.text())
def test_any_label_value_and_help_text_match(values, help_text):
    registry = Families(values, help_text)
    for accept in SCRAPER_ACCEPT_HEADERS:
        assert encode(registry, accept) == expected(registry, accept)


def test_each_prometheus_gets_the_content_type_prometheus_client_chooses():
    assert encode(Combined(), PROMETHEUS_2_ACCEPT)[1] == (
        "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"
    )
    assert encode(Combined(), PROMETHEUS_3_ACCEPT)[1] == (
        "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=allow-utf-8"
    )
    assert encode(Combined(), TEXT_UTF8_ACCEPT)[1] == (
        "text/plain; version=1.0.0; charset=utf-8; escaping=allow-utf-8"
    )
    for accept in ("", "*/*", "text/plain;version=0.0.4"):
        assert encode(Combined(), accept)[1] == "text/plain; version=0.0.4; charset=utf-8"


def line_gauge(name, documentation, labels=()):
    return LineFamily(name, documentation, "gauge", labels)


def line_counter(name, documentation, labels=()):
    return LineFamily(name, documentation, "counter", labels)


class SameFamilies:
    """dbhealth-like families built from the given constructors: ours or prometheus_client's."""

    def __init__(self, values: list[str], help_text: str, gauge, counter) -> None:
        self.values = values
        self.help_text = help_text
        self.gauge = gauge
        self.counter = counter

    def collect(self):
        up = self.gauge("dbhealth_up", self.help_text, labels=["alias", "vendor"])
        failures = self.counter("dbhealth_probe_failures", "Failures.", labels=["reason"])
        info = self.gauge("dbhealth_statement_info", "Text.", labels=["query", "alias"])
        for index, value in enumerate(self.values):
            up.add_metric([value, "postgresql"], index % 2)
            failures.add_metric([value], index * 3)
            info.add_metric([value, f"a{index}"], 1)
        rounds = self.counter("dbhealth_probe_rounds", "Rounds.")
        rounds.add_metric([], 12345678901)
        yield from (rounds, up, failures, info)


@given(values=st.lists(st.text(), max_size=5), help_text=st.text())
def test_line_families_are_written_as_prometheus_client_writes_its_own(values, help_text):
    ours = SameFamilies(values, help_text, line_gauge, line_counter)
    library = SameFamilies(values, help_text, GaugeMetricFamily, CounterMetricFamily)
    for accept in ACCEPT_HEADERS:
        assert encode(ours, accept) == expected(library, accept)
    assert [m.samples for m in ours.collect()] == [m.samples for m in library.collect()]


def test_a_line_family_refuses_what_it_cannot_write_plainly():
    with pytest.raises(ValueError):
        LineFamily("dbhealth:odd", "Colon.", "gauge")
    with pytest.raises(ValueError):
        LineFamily("dbhealth_seconds", "Histogram.", "histogram")
    with pytest.raises(ValueError):
        LineFamily("dbhealth_up", "Reserved label.", "gauge", ["__name__"])


@pytest.fixture
def handed_to_prometheus_client(monkeypatch) -> list[str]:
    """The names of the families prometheus_client's own writers are given to write."""
    handed: list[str] = []

    def spy(writer):
        def spying(collector, *args, **kwargs):
            handed.extend(metric.name for metric in collector.collect())
            return writer(collector, *args, **kwargs)

        return spying

    for module in (text_exposition, openmetrics_exposition):
        monkeypatch.setattr(module, "generate_latest", spy(module.generate_latest))
    return handed


class LineFamiliesAndUtf8Names:
    """dbhealth's own families next to names that prometheus_client 0.26 accepts but are not
    legacy names, which each escaping writes its own way."""

    def collect(self):
        yield from SameFamilies(["app", 'we"ird'], "Help.", line_gauge, line_counter).collect()
        yield GaugeMetricFamily("ünicode_name", "Not a legacy name.", value=3)
        utf8_label = GaugeMetricFamily("utf8_label", "Not a legacy label name.", labels=["ålias"])
        utf8_label.add_metric(["app"], 5)
        yield utf8_label


@pytest.mark.parametrize("accept", SCRAPER_ACCEPT_HEADERS)
def test_scrapers_get_dbhealths_families_without_prometheus_clients_writers(
    accept, handed_to_prometheus_client
):
    body, _ = encode(LineFamiliesAndUtf8Names(), accept)
    assert handed_to_prometheus_client == ["ünicode_name", "utf8_label"]
    assert b"dbhealth_up{" in body


def test_prometheus_3_gets_utf8_names_quoted_by_prometheus_client():
    registry = LineFamiliesAndUtf8Names()
    body, content_type = encode(registry, PROMETHEUS_3_ACCEPT)
    assert (body, content_type) == expected(registry, PROMETHEUS_3_ACCEPT)
    assert '{"ünicode_name"} 3.0\n'.encode() in body
    assert 'utf8_label{"ålias"="app"} 5.0\n'.encode() in body
    assert body.endswith(b"# EOF\n") and body.count(b"# EOF") == 1


@pytest.mark.parametrize(
    "accept",
    [
        "application/openmetrics-text;version=1.0.0;escaping=dots",
        "application/openmetrics-text;version=1.0.0;escaping=values",
        "text/plain;version=1.0.0;escaping=dots",
    ],
)
def test_escapings_that_rewrite_plain_names_leave_everything_to_prometheus_client(
    accept, handed_to_prometheus_client
):
    registry = LineFamiliesAndUtf8Names()
    encode(registry, accept)
    assert handed_to_prometheus_client == [metric.name for metric in registry.collect()]
