"""Statement texts made safe to export: no literal, number or password clause survives.

pg_stat_statements replaces constants only in plannable statements; utility statements keep the
text as sent, so `ALTER ROLE x PASSWORD '...'`, `DO $$...$$` or `SET x = '...'` reach every
pg_monitor role verbatim. MySQL digests are normalized by the server; they pass through here too.

The scanner follows each server's lexer closely enough never to take less than the server does as
a literal or comment. Where the server's reading depends on a setting (does a backslash escape a
quote? `standard_conforming_strings`, `NO_BACKSLASH_ESCAPES`) it takes the widest one: a quoted
string holding a backslash runs to the end of the text. Identifiers stay, quoted or not, except
as the value of a SET, where an unquoted word is a value like any other.
"""

import re
from typing import Literal

PLACEHOLDER = "?"

# Both servers take any non-ASCII character as part of an identifier.
_START = "A-Za-z_\x80-\U0010ffff"
_PART = "A-Za-z0-9_\x80-\U0010ffff"
_NUMBER = r"(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?"
# Runs of characters that start nothing: whitespace, most operators and punctuation.
_PLAIN = rf"[^'\"`$/\-.;=#{_PART}]+"

_POSTGRESQL = re.compile(
    rf"""
      (?P<line_comment>--[^\n]*)
    | (?P<block_comment>/\*)
    | (?P<escape_string>[eE]'(?:[^'\\]++|\\.|'')*+(?:'|\\?\Z))
    | (?P<unicode_string>[uU]&'(?:[^']++|'')*+(?:'|\Z))
    | (?P<string>[bBxXnN]?'(?:[^']++|'')*+(?:'|\Z))
    | (?P<dollar_quote>\$(?P<tag>(?:[{_START}][{_PART}]*)?)\$)
    | (?P<parameter>\$\d+)
    | (?P<identifier>"(?:[^"]++|"")*+"?)
    | (?P<number>{_NUMBER}[{_PART}]*)
    | (?P<word>[{_START}][{_PART}$]*)
    | (?P<plain>{_PLAIN}|.)
    """,
    re.VERBOSE | re.DOTALL,
)

# No dollar quotes, `$` belongs to identifiers, "..." is a string (unless ANSI_QUOTES, where
# hiding an identifier costs nothing), `#` and `-- ` start comments, which do not nest.
_MYSQL = re.compile(
    rf"""
      (?P<line_comment>(?:\#|--(?=[\s\x00-\x1f]|\Z))[^\n]*)
    | (?P<closed_comment>/\*.*?(?:\*/|\Z))
    | (?P<string>[bBxXnN]?'(?:[^']++|'')*+(?:'|\Z)|"(?:[^"]++|"")*+(?:"|\Z))
    | (?P<identifier>`(?:[^`]++|``)*+`?)
    | (?P<number>{_NUMBER}[{_PART}$]*)
    | (?P<word>[{_START}$][{_PART}$]*)
    | (?P<plain>{_PLAIN}|.)
    """,
    re.VERBOSE | re.DOTALL,
)

_SCANNERS = {"postgresql": _POSTGRESQL, "mysql": _MYSQL}
_COMMENT_MARK = re.compile(r"/\*|\*/")
# Words after which everything is a secret, to the end of the text.
_SECRET_CLAUSES = frozenset({"password", "identified"})
# Statements whose SET assigns columns from expressions the server normalizes itself.
_DML = frozenset(
    {"select", "insert", "update", "delete", "merge", "with", "values", "table", "replace"}
)


def sanitize(text: str, dialect: Literal["postgresql", "mysql"] = "postgresql") -> str:
    """`text` with every literal, number and password clause replaced by `?` and comments
    dropped; `$n` parameters and identifiers stay. Total: any string in, a string out."""
    scanner = _SCANNERS[dialect]
    out: list[str] = []
    position, end = 0, len(text)
    first_word: str | None = None  # of the current statement
    in_set = False  # a SET clause outside DML: what follows `=` or TO is a value
    in_value = False
    while position < end:
        token = scanner.match(text, position)
        kind, value = token.lastgroup, token.group()
        position = token.end()
        if kind in ("line_comment", "closed_comment"):
            out.append(" ")
        elif kind == "block_comment":
            position = _nested_comment_end(text, position)
            out.append(" ")
        elif kind == "string" and "\\" in value:
            out.append(PLACEHOLDER)
            break
        elif kind in ("string", "escape_string", "unicode_string", "number"):
            out.append(PLACEHOLDER)
        elif kind == "dollar_quote":
            closing = text.find(value, position)
            if closing < 0:
                out.append(PLACEHOLDER)
                break
            position = closing + len(value)
            out.append(PLACEHOLDER)
        elif kind == "identifier":
            out.append(PLACEHOLDER if in_value else value)
        elif kind == "word":
            lowered = value.lower()
            if lowered in _SECRET_CLAUSES:
                out.append(f"{value} {PLACEHOLDER}")
                break
            if in_value and lowered != "for":
                out.append(PLACEHOLDER)
                continue
            if lowered == "for" and in_set:
                # MariaDB's SET STATEMENT ... FOR <statement>: a new statement starts.
                first_word, in_set, in_value = None, False, False
            elif first_word is None:
                first_word = lowered
            if lowered == "set" and first_word not in _DML:
                in_set = True
            elif lowered == "to" and in_set:
                in_value = True
            out.append(value)
        else:
            if value == ";":
                first_word, in_set, in_value = None, False, False
            elif value == "=" and in_set:
                in_value = True
            elif value == "-" and out and out[-1] == "-":
                # Two minus signs, not a comment (MySQL's needs a space after `--`): kept apart
                # so that the output reads the same way again.
                out.append(" ")
            out.append(value)
    return "".join(out)


def _nested_comment_end(text: str, position: int) -> int:
    """PostgreSQL's block comments nest; one left open runs to the end of the text."""
    depth = 1
    for mark in _COMMENT_MARK.finditer(text, position):
        depth += 1 if mark.group() == "/*" else -1
        if depth == 0:
            return mark.end()
    return len(text)


def source_length(text_length: int) -> int:
    """Raw characters to read for `text_length` safe ones: literals and comments shrink, so a
    longer prefix is read (and cut after `sanitize`); a literal the prefix cuts runs to its end."""
    return max(1024, 4 * text_length)
