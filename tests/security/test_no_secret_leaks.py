"""No password or DSN ever shows: not in metrics, health, status page, logs or the CLI."""

from tests.security.conftest import PLANTED
from tests.security.http_client import request
from tests.serving import manage

EXPECTED_REASONS = {
    "pg_wrong": "auth",
    "pg_dns": "dns",
    "maria_refused": "refused",
    "maria_wrong": "auth",
}


def test_every_output_is_free_of_planted_passwords_while_aliases_fail(secured) -> None:
    auth = {"Authorization": f"Bearer {secured.token}"}
    address = secured.served.address
    outputs: dict[str, str] = {}
    for path in [
        "/metrics",
        "/healthz",
        "/",
        "/probe?alias=pg_good",
        "/probe?alias=pg_wrong",
        "/probe?alias=pg_dns",
        "/probe?alias=maria_refused",
        "/probe?alias=maria_wrong",
        f"/probe?alias={PLANTED}",
        "/nope",
        "/metrics?" + PLANTED,
    ]:
        reply = request(address, "GET", path, auth)
        outputs[f"GET {path}"] = reply.body + str(reply.headers)
    outputs["openmetrics"] = request(
        address, "GET", "/metrics", {**auth, "Accept": "application/openmetrics-text"}
    ).body

    health = request(address, "GET", "/healthz", auth).body
    for alias, reason in EXPECTED_REASONS.items():
        assert f'"{alias}"' in health
        assert (
            f'dbhealth_down_reason{{alias="{alias}",reason="{reason}"}} 1.0'
            in outputs["GET /metrics"]
        )
    assert 'dbhealth_up{alias="pg_good",vendor="postgresql"} 1.0' in outputs["GET /metrics"]

    env = {**secured.env, "PATH": "/usr/bin:/bin"}
    for command in (["dbhealth"], ["dbhealth", "--json"], ["check"], ["dbhealth", "--alias", "x"]):
        result = manage(command, env)
        outputs[" ".join(command)] = result.stdout + result.stderr
    assert "auth" in outputs["dbhealth"] and "refused" in outputs["dbhealth"]

    outputs["service log"] = secured.served.log.read_text(errors="replace")
    # DEBUG logging is on: the log holds every alias's down message, redacted.
    assert "alias pg_wrong (postgresql) is down: auth" in outputs["service log"]

    leaks = [
        name for name, text in outputs.items() if PLANTED in text and "?" + PLANTED not in name
    ]
    assert not leaks
    # Requests that carry the marker in their URL may echo it only in the access log line.
    assert PLANTED not in outputs[f"GET /probe?alias={PLANTED}"]
