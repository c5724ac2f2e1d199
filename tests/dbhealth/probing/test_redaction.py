"""redact: secrets go, the rest of a driver's message stays readable."""

import MySQLdb
import pytest
from dbhealth.probing.redaction import _PASSWORD_USED, MAX_MESSAGE_LENGTH, redact
from hypothesis import assume, given
from hypothesis import strategies as st

# No whitespace: an unquoted secret in a message ends at the first space.
secrets_ = st.text(st.characters(exclude_categories=("Z", "C")), min_size=4, max_size=20).filter(
    lambda secret: not _PASSWORD_USED.fullmatch(secret)
)
words = st.text(alphabet="abcdefghij .,:;()'\"=@/", max_size=30)


@pytest.mark.parametrize("password_sent", [True, False])
def test_mariadbs_access_denied_message_stays_as_it_is(mariadb, password_sent):
    password = "Wr0ng-pass:word" if password_sent else ""
    with pytest.raises(MySQLdb.OperationalError) as failure:
        MySQLdb.connect(host=mariadb.host, port=mariadb.port, user="monitor", password=password)
    message = str(failure.value)
    assert "(using password: " in message
    assert redact(message, [password] if password else []) == message


def test_an_alias_with_a_wrong_password_says_that_one_was_sent(mariadb, make_harness):
    settings = mariadb.django_settings("legacy", "monitor", "Wr0ngPassw0rd")
    harness = make_harness({"legacy": settings})
    message = harness.round().aliases["legacy"].message
    assert "Access denied for user 'monitor'@'127.0.0.1' (using password: YES)" in message
    assert "Wr0ngPassw0rd" not in message


@given(before=words, secret=secrets_, after=words)
def test_a_configured_secret_goes_wherever_it_appears(before, secret, after):
    assert secret not in redact(before + secret + after, [secret])


@pytest.mark.parametrize(
    "template",
    [
        "connection failed: password={}",
        "host=db user=u password={} dbname=x",
        "PASSWORD = '{}' rejected",
        "pwd:{}",
        "passwd: {}",
        "using password: {}",
        "could not connect to postgres://app:{}@db.example/app",
        "bad url mysql://user:{}@10.0.0.1:3306/legacy?ssl=1 given",
    ],
)
@given(secret=secrets_)
def test_an_unconfigured_secret_in_a_known_form_goes(template, secret):
    quoted = "'" in template
    assume(not quoted or "'" not in secret)
    message = template.format(secret)
    assume(len(message) <= MAX_MESSAGE_LENGTH)
    # The message's own words and the mask are no secret: "conn" is in "could not connect".
    assume(secret not in redact(template.format("S3cr3t"), []))
    assert secret not in redact(message, [])


def test_only_the_secret_is_removed():
    message = 'FATAL: password authentication failed for user "app" (password=abc) at 10:00'
    assert redact(message, []) == (
        'FATAL: password authentication failed for user "app" (password=*** at 10:00'
    )
    assert redact("postgres://app:p@ss/w@db/x ok", []) == "postgres://***@db/x ok"
    assert redact("x (using password: NO)", []) == "x (using password: NO)"
    assert redact("x password: NOPE", []) == "x password=***"
