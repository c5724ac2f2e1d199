"""label_text's printable fast path gives what the character-by-character cleaning gives."""

from dbhealth.exposition.families import label_text
from hypothesis import given
from hypothesis import strategies as st


def cleaned_char_by_char(value: str, limit: int) -> str:
    cleaned = "".join(
        " " if not ch.isprintable() else ch
        for ch in value.encode("utf-8", "replace").decode("utf-8", "replace")
    )
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


@given(value=st.text(), limit=st.integers(min_value=1, max_value=40))
def test_any_text_is_cleaned_as_character_by_character(value, limit):
    assert label_text(value, limit) == cleaned_char_by_char(value, limit)


def test_the_texts_databases_send():
    assert label_text("SELECT *\n  FROM t\tWHERE x = $1") == "SELECT * FROM t WHERE x = $1"
    assert label_text("plain text") == "plain text"
    assert label_text("a\ud800b") == "a?b"
    assert label_text("x" * 10, 5) == "xxxx…"
