"""Whatever text databases and configuration hold, the exposition stays valid and bounded."""

import dataclasses
import time

from dbhealth.configuration.targets import build_target
from dbhealth.configuration.toml_file import MAX_ALIAS_LENGTH
from dbhealth.exposition.encoding import encode
from dbhealth.exposition.families import MAX_LABEL_LENGTH, StateCollector, label_text
from dbhealth.probing.state import AliasState, ServiceState, Statement
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from tests.dbhealth_fixtures import promtool_check_metrics

# Anything a driver can hand back, lone surrogates (undecodable bytes) and control characters too.
database_text = st.text(max_size=3000)
# Names come from TOML, which cannot hold lone surrogates; the loader admits printable aliases only.
config_text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=300)
aliases = st.text(
    st.characters(
        exclude_categories=("Cs", "Cc", "Cf", "Zl", "Zp", "Zs", "Cn", "Co"), include_characters=" "
    ),
    min_size=1,
    max_size=MAX_ALIAS_LENGTH,
)
NASTY = ["'", '"', "\\", "\n", "\r", "\t", "\x00", "\x1b[31m", "\udcff", "\u2028", "☃", "{}", "="]


def rendered(alias: str, host: str, database: str, texts: list[str]) -> tuple[str, str]:
    base = build_target("placeholder", {"ENGINE": "django.db.backends.sqlite3", "NAME": "x"}, {})
    target = dataclasses.replace(
        base, alias=alias, vendor="postgresql", host=host, database=database
    )
    now = time.time()
    statements = [
        Statement(
            queryid=text[:40] or "0",
            query=text,
            calls=1,
            total_seconds=0.5,
            mean_seconds=0.5,
            rows=1,
        )
        for text in dict.fromkeys(texts)
    ]
    state = ServiceState(
        rounds=1,
        aliases={
            alias: AliasState(
                up=True,
                checked_at=now,
                last_success=now,
                version=texts[0] if texts else "16",
                connections={text[:20] or "idle": 1 for text in texts[:3]},
                statements=statements,
                statements_available=True,
                statements_at=now,
            )
        },
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector([target], state, now=now))
    # Through the writer /metrics uses, in both formats it negotiates.
    text, _ = encode(registry, "")
    openmetrics, _ = encode(registry, "application/openmetrics-text; version=1.0.0")
    return text.decode("utf-8"), openmetrics.decode("utf-8")


def label_values(exposition: str) -> list[str]:
    return [
        value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        for value in sample.labels.values()
    ]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    alias=aliases,
    host=config_text,
    database=config_text,
    texts=st.lists(st.one_of(database_text, st.sampled_from(NASTY)), max_size=4),
)
def test_any_text_renders_a_valid_bounded_exposition(alias, host, database, texts) -> None:
    text, openmetrics = rendered(alias, host, database, texts)
    check = promtool_check_metrics(text)
    assert "error" not in (check.stdout + check.stderr).lower(), check.stderr
    assert openmetrics.endswith("# EOF\n")
    values = label_values(text)
    assert all(len(value) <= MAX_LABEL_LENGTH for value in values)
    assert all(value.isprintable() for value in values)
    for query in texts:
        assert label_text(query) in values


@given(st.text())
def test_label_text_is_printable_valid_utf8_and_bounded(value: str) -> None:
    cleaned = label_text(value)
    assert len(cleaned) <= MAX_LABEL_LENGTH
    assert cleaned.isprintable()
    cleaned.encode("utf-8")
    assert label_text(cleaned) == cleaned


def test_real_statement_texts_with_quotes_controls_and_length_stay_valid(postgres, make_harness):
    marker = "dbhealth-weird-text"
    # Quoted identifiers are what survives of a statement's text (literals and comments do not):
    # the odd characters go into a column alias.
    alias = f'{marker} \'single\' ""double"" back\\slash\nnew line\ttab \x01\x1b[31m ☃'
    # A statement shape of its own: pg_stat_statements keeps the first text of each shape.
    postgres.sql(
        f'SELECT count(*) AS "{alias}" FROM pg_class, pg_am WHERE amname <> '
        f"'weird' AND amname <> '{'x' * 4000}'",
        dbname="users",
    )
    harness = make_harness(
        {"users": postgres.django_settings("users", "monitor", postgres.monitor_password)},
        statement_top_n=1000,
    )
    harness.round()
    text = harness.exposition()
    check = promtool_check_metrics(text)
    assert check.returncode == 0, check.stdout + check.stderr
    queries = [
        sample.labels["query"]
        for family in text_string_to_metric_families(text)
        if family.name == "dbhealth_statement_info"
        for sample in family.samples
    ]
    weird = [query for query in queries if marker in query]
    assert len(weird) == 1
    assert '\'single\' ""double"" back\\slash new line tab' in weird[0]
    # Cut to the configured statement_text_length, then cleaned: bounded and printable.
    assert all(len(query) <= 200 and query.isprintable() for query in queries)
