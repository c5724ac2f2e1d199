"""sanitize: no literal, number, comment or password clause of a statement text survives.

The planted values carry a marker made of letters no surrounding fragment holds, so any of those
letters in the output is a leak, however little of the value got through.
"""

import time

import pytest
from dbhealth.probing.statement_text import sanitize, source_length
from hypothesis import assume, given, settings
from hypothesis import strategies as st

MARK = "JKQVZ"
# Everything that ends, escapes or opens something in one dialect or the other.
HOSTILE = "'\"`\\$/*-#;=&\n eEuUxXbBnN_a1é"
SEPARATORS = st.sampled_from([" ", "\n", "  ", "\t", " \n "])


def leaked(output: str) -> bool:
    return any(letter in output for letter in MARK)


@st.composite
def secrets_(draw) -> str:
    hostile = st.text(alphabet=HOSTILE, max_size=8)
    return draw(hostile) + draw(st.text(alphabet=MARK, min_size=4, max_size=10)) + draw(hostile)


def standard(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def backslash_escaped(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@st.composite
def postgresql_literals(draw, value: str) -> str:
    form = draw(st.sampled_from(["standard", "N", "E", "e", "U&", "dollar"]))
    if form in ("standard", "N"):
        return form.replace("standard", "") + standard(value)
    if form in ("E", "e"):
        return form + backslash_escaped(value)
    if form == "U&":
        return "U&'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    delimiter = "$" + draw(st.sampled_from(["", "a", "tag", "b_1", "é", "Tag9"])) + "$"
    quoted = delimiter + value + delimiter
    # The value must not close the quote early: the server would end it there too.
    assume(quoted.find(delimiter, len(delimiter)) == len(delimiter) + len(value))
    return quoted


@st.composite
def mysql_literals(draw, value: str) -> str:
    form = draw(st.sampled_from(["standard", "backslash", "N", "_utf8mb4", "double"]))
    if form == "double":
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    literal = backslash_escaped(value) if form == "backslash" else standard(value)
    return {"N": "N", "_utf8mb4": "_utf8mb4"}.get(form, "") + literal


PASSWORD_CLAUSES = st.sampled_from(
    [
        "PASSWORD",
        "password",
        "ENCRYPTED PASSWORD",
        "WITH Password",
        "IDENTIFIED BY",
        "identified with caching_sha2_password by",
        "IDENTIFIED VIA ed25519 USING PASSWORD(",
    ]
)


@st.composite
def planted(draw, dialect: str) -> str:
    """One way a statement carries a secret: a literal, a comment, a clause, a SET value."""
    value = draw(secrets_())
    literal = postgresql_literals if dialect == "postgresql" else mysql_literals
    kind = draw(st.sampled_from(["literal", "comment", "password", "set"]))
    if kind == "literal":
        return draw(literal(value))
    if kind == "comment":
        line = "--" if dialect == "postgresql" else draw(st.sampled_from(["-- ", "#"]))
        return draw(
            st.sampled_from(
                [
                    "/*" + value.replace("*/", "* /") + "*/",
                    line + value.replace("\n", " ") + "\n",
                ]
            )
        )
    if kind == "password":
        # Whatever follows the keyword, quoted or not, well formed or not.
        tail = draw(st.one_of(literal(value), st.just(value)))
        return f"{draw(PASSWORD_CLAUSES)} {tail}"
    bare = draw(st.text(alphabet=MARK, min_size=4, max_size=10))
    value_text = draw(st.one_of(literal(value), st.just(bare), st.just(f'"{bare}"')))
    lead = draw(st.sampled_from(["set application_name =", "SET x TO", "alter role r set x to"]))
    # A statement of its own: in SELECT or UPDATE, SET assigns columns, and a word is a column.
    return f"; {lead} {value_text}"


def fragments(dialect: str, digits: bool = True) -> st.SearchStrategy[str]:
    """Self-contained tokens around the planted value: none opens anything it does not close."""
    words = st.sampled_from(["select", "from", "t", "copy", "do", "create", "table", "as", "for"])
    prefixes = st.sampled_from(["e", "u", "x", "b", "n", "é", "a$b", "to", "stdout", "begin"])
    operators = st.sampled_from(["(", ")", ",", ";", "=", "+", "-", "*", "/", "&", "?", "."])
    closed = ["'ab'", "''", "'a''b'", "/* c /* d */ e */", "-- c\n", "$$ a $$", "$q$ b $q$"]
    if dialect == "mysql":
        closed = ["'ab'", "''", "'a\\'b'", '"c"', "/* c */", "# c\n", "-- c\n", "`a b`"]
    identifier = st.text(alphabet="abc '$", max_size=5).map(lambda s: '"' + s + '"')
    if dialect == "mysql":
        identifier = st.text(alphabet="abc '$\"", max_size=5).map(lambda s: "`" + s + "`")
    options = [words, prefixes, operators, st.sampled_from(closed), identifier]
    if digits:
        options.append(st.sampled_from(["12", "3.5", "1e3", ".5", "0x1F", "$1", "$12"]))
    return st.one_of(*options)


@st.composite
def statements(draw, dialect: str) -> tuple[str, str, str]:
    """Context before, the planted secret, context after."""

    def context() -> str:
        parts = draw(st.lists(fragments(dialect), max_size=6))
        return "".join(part + draw(SEPARATORS) for part in parts)

    return context(), draw(planted(dialect)), draw(SEPARATORS) + context()


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
@given(data=st.data())
def test_a_planted_secret_never_shows_whole_or_cut(dialect, data):
    before, secret, after = data.draw(statements(dialect))
    statement = before + secret + after
    safe = sanitize(statement, dialect)
    assert not leaked(safe), statement
    assert sanitize(safe, dialect) == safe
    # The server's prefix can end anywhere: inside the literal, the comment, the delimiter.
    for cut in range(len(before), len(before) + len(secret)):
        assert not leaked(sanitize(statement[:cut], dialect)), statement[:cut]


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
@given(data=st.data())
def test_numbers_bit_and_hex_strings_never_show(dialect, data):
    digits = st.text(alphabet="0123456789", min_size=1, max_size=12)
    value = data.draw(
        st.one_of(
            digits,
            st.tuples(digits, digits).map(".".join),
            st.tuples(digits, digits).map(lambda p: f"{p[0]}e-{p[1]}"),
            st.text(alphabet="01", min_size=1, max_size=16).map(lambda s: f"B'{s}'"),
            digits.map(lambda s: f"X'{s}'"),
        )
    )
    parts = data.draw(st.lists(fragments(dialect, digits=False), max_size=6))
    statement = " ".join([*parts, value, *parts])
    assert not any(character.isdigit() for character in sanitize(statement, dialect))


any_text = st.text(st.characters(exclude_categories=()), max_size=200)


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
@given(text=st.one_of(any_text, st.text(alphabet=HOSTILE + "ab12", max_size=60)))
def test_total_and_idempotent_on_any_text(dialect, text):
    once = sanitize(text, dialect)
    assert sanitize(once, dialect) == once


@pytest.mark.parametrize(
    ("text", "safe"),
    [
        ("ALTER ROLE app PASSWORD 'hunter2'", "ALTER ROLE app PASSWORD ?"),
        (
            "CREATE ROLE x LOGIN PASSWORD 'a''b' VALID UNTIL 'infinity'",
            "CREATE ROLE x LOGIN PASSWORD ?",
        ),
        ("create user x with encrypted password 'y'", "create user x with encrypted password ?"),
        ("DO $$BEGIN PERFORM 'x'; END$$", "DO ?"),
        ("DO $fn$ BEGIN RAISE '$$'; END $fn$ LANGUAGE plpgsql", "DO ? LANGUAGE plpgsql"),
        ("SET application_name = 'secret'", "SET application_name = ?"),
        ("SET search_path TO app, public", "SET search_path TO ?, ?"),
        ("ALTER ROLE r SET work_mem TO '64MB'", "ALTER ROLE r SET work_mem TO ?"),
        ("COPY (SELECT 'x', 42) TO STDOUT", "COPY (SELECT ?, ?) TO STDOUT"),
        (
            "CREATE TABLE t AS SELECT 'x' AS a, 1.5e-3 AS b",
            "CREATE TABLE t AS SELECT ? AS a, ? AS b",
        ),
        ("SELECT E'a\\'b', U&'d\\0061t', B'0101', X'1F', N'n'", "SELECT ?, ?, ?, ?, ?"),
        (
            'SELECT "Password", "a""b" FROM t WHERE id = $1',
            'SELECT "Password", "a""b" FROM t WHERE id = $1',
        ),
        ("SELECT $1 /* a /* nested */ 'x' */ + 2 -- 'y'\n", "SELECT $1   + ?  \n"),
        ("SELECT 'cut off", "SELECT ?"),
        ("SELECT 'a\\' secret'", "SELECT ?"),
        ("DO $body$ never closed", "DO ?"),
        ("UPDATE t SET a = b WHERE c = $1", "UPDATE t SET a = b WHERE c = $1"),
    ],
)
def test_postgresql_texts(text, safe):
    assert sanitize(text) == safe


@pytest.mark.parametrize(
    ("text", "safe"),
    [
        (
            "CREATE USER u IDENTIFIED WITH caching_sha2_password BY 'p'",
            "CREATE USER u IDENTIFIED ?",
        ),
        ("SET PASSWORD FOR u = PASSWORD('p')", "SET PASSWORD ?"),
        ('SELECT "secret", `col`, 0x1F # note\n', "SELECT ?, `col`, ?  \n"),
        ("SELECT 1--'a\nb'", "SELECT ?- -?"),
        (
            "SET STATEMENT max_statement_time = 1 FOR SELECT a FROM t",
            "SET STATEMENT max_statement_time = ? FOR SELECT a FROM t",
        ),
        (
            "SELECT `DIGEST` , LEFT ( ? , ? ) FROM t WHERE a IN (...)",
            "SELECT `DIGEST` , LEFT ( ? , ? ) FROM t WHERE a IN (...)",
        ),
    ],
)
def test_mysql_texts(text, safe):
    assert sanitize(text, "mysql") == safe


@settings(max_examples=20)
@given(text_length=st.integers(min_value=0, max_value=100_000))
def test_the_prefix_read_is_longer_than_what_is_kept(text_length):
    assert source_length(text_length) >= max(text_length, 1024)


def test_fast_on_long_and_pathological_texts():
    ordinary = "SELECT a, b FROM t WHERE c = $1 AND d = 'x' /* c */ -- d\n" * 70  # about 4 KB
    hostile = ["'" * 200_000, "/*" * 100_000, "E'\\" * 70_000, "$a$" * 70_000, '"' * 200_000]
    started = time.perf_counter()
    for _ in range(10):
        sanitize(ordinary)
    per_refresh = time.perf_counter() - started
    started = time.perf_counter()
    for text in hostile:
        sanitize(text)
        sanitize(text, "mysql")
    assert per_refresh < 0.1
    assert time.perf_counter() - started < 2.0
