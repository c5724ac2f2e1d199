"""The config loader on arbitrary documents: loads or fails in one line, never echoes secrets."""

from pathlib import Path

from dbhealth.configuration.options import GLOBAL_DEFAULTS
from dbhealth.configuration.targets import build_target
from dbhealth.configuration.toml_file import MAX_ALIAS_LENGTH, config_from_document
from django.core.exceptions import ImproperlyConfigured
from hypothesis import given, settings
from hypothesis import strategies as st

SECRET = "Pl4nted-s3cret-e6b1"
NOWHERE = Path("/nonexistent-dbhealth-config-dir")

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
engines = st.sampled_from(
    [
        "django.db.backends.postgresql",
        "django.db.backends.mysql",
        "django.db.backends.sqlite3",
        "django.db.backends.oracle",
        "django.db.backends.nosuch",
        "",
    ]
)
urls = st.builds(
    lambda scheme, user, host, port, path: f"{scheme}://{user}:{SECRET}@{host}:{port}/{path}",
    st.sampled_from(["postgres", "mysql", "mariadb", "sqlite", "oracle", "", "http"]),
    st.text(max_size=8),
    st.text(max_size=12),
    st.text(max_size=6),
    st.text(max_size=12),
)
table_entries = st.fixed_dictionaries(
    {},
    optional={
        "ENGINE": engines,
        "NAME": values,
        "USER": values,
        "PASSWORD": st.just(SECRET),
        "HOST": values,
        "PORT": values,
        "OPTIONS": values | st.just({"password": SECRET}),
        "URL": urls | values,
        "PASSWORD_FILE": values,
        "PASSWORD_ENV": values,
        "DBHEALTH": values
        | st.dictionaries(st.sampled_from(["deadline", "critical", "replica", "x"]), scalars),
        "CONN_MAX_AGE": values,
        "TIME_ZONE": values,
        "EXTRA": values,
    },
)
documents = st.fixed_dictionaries(
    {
        "databases": st.dictionaries(
            st.text(min_size=0, max_size=MAX_ALIAS_LENGTH + 5),
            urls | table_entries | values,
            max_size=4,
        )
    },
    optional={
        "dbhealth": st.dictionaries(
            st.sampled_from(sorted(GLOBAL_DEFAULTS)) | st.text(max_size=6), scalars, max_size=3
        ),
    },
)


@settings(max_examples=300, deadline=None)
@given(documents)
def test_a_document_loads_or_fails_in_one_line_without_secrets(document) -> None:
    try:
        config = config_from_document(document, source="dbhealth.toml", base_dir=NOWHERE)
    except ImproperlyConfigured as exc:
        message = str(exc)
        assert message.startswith("dbhealth.toml: ")
        assert "\n" not in message
        assert SECRET not in message
        return
    assert "default" in config.databases
    for alias in document["databases"]:
        assert 0 < len(alias) <= MAX_ALIAS_LENGTH and alias.isprintable()
        target = build_target(alias, config.databases[alias], {})
        assert target.alias == alias
        if target.problem is not None:
            assert SECRET not in target.problem
        assert SECRET not in repr(target)
