"""DBHEALTH_WEB_CONFIG_FILE: TLS, client certificates and basic auth users for `serve`, in the
Prometheus exporter-toolkit's web configuration format, against real clients: urllib and raw
ssl sockets, and a real Prometheus scraping over HTTPS.

Certificates come from a throwaway CA made with the `openssl` command; password hashes from the
bcrypt package, as `htpasswd -nBC 10` would make them.
"""

import base64
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest

from dbhealth.web_config import BasicAuthUsers
from tests.serving import REPO, Served, serve
from tests.support.ports import free_port
from tests.support.prometheus import PrometheusServer

PASSWORD = "scrape-password-for-tests"
TOKEN = "scrape-token-for-tests"
# What htpasswd -nBC 10 makes; checks at this cost are what the cache saves.
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
WAIT = 30.0


@dataclass
class PKI:
    directory: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # a client certificate from a CA the service does not trust
    stranger_key: Path

    def client(
        self,
        certificate: bool = False,
        stranger: bool = False,
        max_version: ssl.TLSVersion | None = None,
        min_version: ssl.TLSVersion | None = None,
    ) -> ssl.SSLContext:
        """A client that trusts the test CA (hostname checked against the SAN 127.0.0.1)."""
        context = ssl.create_default_context(cafile=self.ca)
        if certificate:
            context.load_cert_chain(self.client_cert, self.client_key)
        if stranger:
            context.load_cert_chain(self.stranger_cert, self.stranger_key)
        if max_version is not None:
            context.maximum_version = max_version
        if min_version is not None:
            context.minimum_version = min_version
        return context


def openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(
        ["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True, timeout=60
    )


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", cert, "-subj", f"/CN={name}", "-days", "2",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    return cert, key


def make_leaf(
    directory: Path, name: str, ca: tuple[Path, Path], san: str, usage: str
) -> tuple[Path, Path]:
    key, csr, cert = (directory / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
    extensions = directory / f"{name}.ext"
    extensions.write_text(
        f"subjectAltName={san}\nextendedKeyUsage={usage}\n"
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
    )
    openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", csr, "-subj", f"/CN={name}",
        cwd=directory,
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", extensions,
        cwd=directory,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is missing: apt-get install openssl")
    directory = tmp_path_factory.mktemp("pki")
    ca = make_ca(directory, "dbhealth-test-ca")
    stranger_ca = make_ca(directory, "stranger-ca")
    server = make_leaf(directory, "server", ca, "IP:127.0.0.1,DNS:localhost", "serverAuth")
    client = make_leaf(directory, "client", ca, "DNS:prometheus", "clientAuth")
    stranger = make_leaf(directory, "stranger", stranger_ca, "DNS:stranger", "clientAuth")
    return PKI(directory, ca[0], *server, *client, *stranger)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str


def fetch(served: Served, path: str, headers: dict[str, str] | None = None) -> Reply:
    request = urllib.request.Request(served.url + path, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30, context=served.ssl_context) as response:
            return Reply(response.status, dict(response.headers), response.read().decode())
    except urllib.error.HTTPError as error:
        return Reply(error.code, dict(error.headers), error.read().decode())


def https_get(address: str, context: ssl.SSLContext, path: str = "/livez") -> int:
    """Status of an https GET with `context`; raises OSError when TLS refuses the client."""
    request = urllib.request.Request(f"https://{address}{path}")
    with urllib.request.urlopen(request, timeout=30, context=context) as response:
        return response.status


def negotiated(address: str, context: ssl.SSLContext) -> str:
    """The TLS version a bare handshake settles on; ssl.SSLError when there is none."""
    host, port = address.rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        return tls.version()


def web_config(directory: Path, text: str) -> Path:
    path = directory / "web.yml"
    path.write_text(text)
    return path


def service_env(directory: Path, config: Path, **extra: str) -> dict[str, str]:
    return {
        "DBHEALTH_WEB_CONFIG_FILE": str(config),
        "DBHEALTH_DATA_DIR": str(directory / "data"),
        **extra,
    }


# --- (1) https with basic auth users, beside the token ------------------------------------------


@pytest.fixture(scope="module")
def tls_service(pki, tmp_path_factory) -> Iterator[Served]:
    """TLS with the test CA's certificate, one basic auth user, a header, and the token too.
    Paths in the file are relative to its directory, as in the toolkit."""
    directory = tmp_path_factory.mktemp("tls-service")
    (directory / "token").write_text(TOKEN + "\n")
    config = web_config(
        pki.directory,
        f"""
tls_server_config:
  cert_file: server.crt
  key_file: server.key
http_server_config:
  headers:
    X-Frame-Options: deny
    Content-Security-Policy: "default-src 'none'"
basic_auth_users:
  prometheus: "{HASH}"
""",
    )
    env = service_env(directory, config, DBHEALTH_AUTH_TOKEN_FILE=str(directory / "token"))
    with serve(env, directory / "service.log", "/livez", ssl_context=pki.client()) as served:
        yield served


def test_https_scrape_with_a_users_password(tls_service) -> None:
    reply = fetch(tls_service, "/metrics", basic("prometheus", PASSWORD))
    assert reply.status == 200
    assert 'dbhealth_up{alias="default",vendor="sqlite"} 1.0' in reply.body


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("prometheus", "wrong"),
        basic("prometheus", PASSWORD + "x"),
        basic("nobody", PASSWORD),
        basic("prometheus", ""),
        {"Authorization": "Bearer " + PASSWORD},
        {"Authorization": "Bearer " + HASH},
        basic("prometheus", HASH),
    ],
    ids=["none", "wrong", "longer", "unknown-user", "empty", "bearer-pw", "bearer-hash", "hash"],
)
def test_wrong_or_missing_credentials_are_refused(tls_service, headers) -> None:
    reply = fetch(tls_service, "/metrics", headers)
    assert reply.status == 401
    assert reply.body == "authentication required\n"
    assert reply.headers["WWW-Authenticate"] == 'Bearer realm="dbhealth", Basic realm="dbhealth"'


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": f"Bearer {TOKEN}"}, basic("any-user", TOKEN), basic("prometheus", PASSWORD)],
    ids=["bearer-token", "basic-token", "basic-user"],
)
def test_either_the_token_or_a_user_opens_the_endpoints(tls_service, headers) -> None:
    for path in ("/healthz", "/", "/probe?alias=default", "/sd"):
        assert fetch(tls_service, path, headers).status == 200, path


def test_liveness_and_readiness_stay_open(tls_service) -> None:
    assert fetch(tls_service, "/livez").status == 200
    assert fetch(tls_service, "/readyz").status == 200


def test_configured_headers_are_on_every_answer(tls_service) -> None:
    for reply in (fetch(tls_service, "/livez"), fetch(tls_service, "/metrics")):
        assert reply.headers["X-Frame-Options"] == "deny"
        assert reply.headers["Content-Security-Policy"] == "default-src 'none'"
    assert reply.status == 401


def test_plain_http_to_the_tls_port_fails(tls_service) -> None:
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://{tls_service.address}/livez", timeout=30)


def test_a_client_that_does_not_trust_the_ca_fails(tls_service) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        negotiated(tls_service.address, ssl.create_default_context())


def test_tls13_is_negotiated_and_tls12_accepted_by_default(tls_service, pki) -> None:
    assert negotiated(tls_service.address, pki.client()) == "TLSv1.3"
    tls12 = pki.client(max_version=ssl.TLSVersion.TLSv1_2)
    assert negotiated(tls_service.address, tls12) == "TLSv1.2"


# --- (2) client certificates ---------------------------------------------------------------------


def test_require_and_verify_client_cert(pki, tmp_path) -> None:
    config = web_config(
        tmp_path,
        f"""
tls_server_config:
  cert_file: {pki.server_cert}
  key_file: {pki.server_key}
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: {pki.ca}
""",
    )
    env = service_env(tmp_path, config)
    with serve(env, tmp_path / "service.log", "/livez", ssl_context=pki.client(True)) as served:
        assert https_get(served.address, pki.client(certificate=True), "/metrics") == 200
        # Under TLS 1.3 the refusal reaches the client as an alert after its side of the
        # handshake: the request fails either way, and never gets an HTTP answer.
        with pytest.raises(OSError):
            https_get(served.address, pki.client())
        with pytest.raises(OSError):
            https_get(served.address, pki.client(stranger=True))
        # Under TLS 1.2 the handshake itself fails.
        with pytest.raises(ssl.SSLError):
            negotiated(served.address, pki.client(max_version=ssl.TLSVersion.TLSv1_2))
        tls12 = pki.client(certificate=True, max_version=ssl.TLSVersion.TLSv1_2)
        assert negotiated(served.address, tls12) == "TLSv1.2"


# --- (3) TLS versions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("versions", "refused", "accepted"),
    [
        ("min_version: TLS13", {"max_version": ssl.TLSVersion.TLSv1_2}, "TLSv1.3"),
        ("max_version: TLS12", {"min_version": ssl.TLSVersion.TLSv1_3}, "TLSv1.2"),
    ],
    ids=["min-tls13", "max-tls12"],
)
def test_tls_versions_outside_the_range_are_refused(pki, tmp_path, versions, refused, accepted):
    config = web_config(
        tmp_path,
        f"""
tls_server_config:
  cert_file: {pki.server_cert}
  key_file: {pki.server_key}
  {versions}
""",
    )
    env = service_env(tmp_path, config)
    with serve(env, tmp_path / "service.log", "/livez", ssl_context=pki.client()) as served:
        # asyncio closes the connection without flushing OpenSSL's protocol_version alert, so
        # the client reads an EOF in the handshake rather than the alert.
        with pytest.raises(ssl.SSLError):
            negotiated(served.address, pki.client(**refused))
        assert negotiated(served.address, pki.client()) == accepted


# --- (4) a real Prometheus -----------------------------------------------------------------------

SCRAPE_CONFIG = """
global:
  scrape_interval: 2s
  scrape_timeout: 2s
scrape_configs:
  - job_name: dbhealth
    scheme: https
    tls_config:
      ca_file: {ca}
    basic_auth:
      username: prometheus
      password: {password}
    static_configs:
      - targets: ["{address}"]
  - job_name: dbhealth-wrong-password
    scheme: https
    tls_config:
      ca_file: {ca}
    basic_auth:
      username: prometheus
      password: wrong
    static_configs:
      - targets: ["{address}"]
"""


def test_prometheus_scrapes_over_https_with_basic_auth(
    tls_service, pki, make_prometheus: Callable[..., PrometheusServer]
) -> None:
    prometheus = make_prometheus(
        SCRAPE_CONFIG.format(ca=pki.ca, password=PASSWORD, address=tls_service.address)
    )

    def settled() -> dict[str, dict] | None:
        targets = {target["labels"]["job"]: target for target in prometheus.targets()}
        if all(target["health"] != "unknown" for target in targets.values()) and targets:
            return targets
        return None

    targets = prometheus.wait_for(settled, timeout=WAIT)
    assert targets["dbhealth"]["health"] == "up", targets["dbhealth"]["lastError"]
    assert targets["dbhealth"]["scrapeUrl"].startswith("https://")
    assert targets["dbhealth-wrong-password"]["health"] == "down"
    assert "401" in targets["dbhealth-wrong-password"]["lastError"]
    result = prometheus.wait_for(
        lambda: prometheus.query('dbhealth_up{job="dbhealth",alias="default"}')["result"],
        timeout=WAIT,
    )
    assert result[0]["value"][1] == "1"


# --- (5) files that cannot be used ---------------------------------------------------------------

BAD_FILES = {
    "unknown-key": (
        "tls_server_confg:\n  cert_file: server.crt\n",
        "unknown key 'tls_server_confg' (known: tls_server_config, http_server_config, "
        "basic_auth_users)",
    ),
    "unknown-tls-key": (
        "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  certfile: x\n",
        "tls_server_config: unknown key 'certfile'",
    ),
    "missing-key-file": (
        "tls_server_config:\n  cert_file: {cert}\n",
        "tls_server_config.key_file is required: TLS needs cert_file and key_file",
    ),
    "unreadable-cert": (
        "tls_server_config:\n  cert_file: missing.crt\n  key_file: {key}\n",
        "tls_server_config.cert_file {dir}/missing.crt: cannot read (No such file or directory)",
    ),
    "not-a-cert": (
        "tls_server_config:\n  cert_file: {key}\n  key_file: {key}\n",
        "tls_server_config.cert_file {key}: no PEM certificate in it",
    ),
    "key-of-another-cert": (
        "tls_server_config:\n  cert_file: {cert}\n  key_file: {client_key}\n",
        "the key does not belong to the certificate",
    ),
    "not-bcrypt": (
        "basic_auth_users:\n  prometheus: PlaintextPassword123\n",
        "basic_auth_users: the password of 'prometheus' is not a bcrypt hash",
    ),
    "client-ca-without-verification": (
        "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n",
        "client_auth_type RequireAndVerifyClientCert needs client_ca_file",
    ),
    "refused-field": (
        "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
        "  client_allowed_sans: [prometheus]\n",
        "tls_server_config.client_allowed_sans is not supported: ",
    ),
    "bad-version": (
        "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  min_version: TLS14\n",
        "tls_server_config.min_version 'TLS14' is not one of TLS10, TLS11, TLS12, TLS13",
    ),
    "repeated-user": (
        f'basic_auth_users:\n  prometheus: "{HASH}"\n  prometheus: "{HASH}"\n',
        "not valid YAML: key 'prometheus' is given twice (line 3, column 3)",
    ),
    "not-yaml": ("tls_server_config: [\n", "not valid YAML: "),
    "empty": ("\n# nothing\n", "the file is empty"),
}


def run_manage(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_file_stops_serve_and_fails_check(pki, tmp_path, case) -> None:
    text, problem = BAD_FILES[case]
    paths = {
        "cert": pki.server_cert,
        "key": pki.server_key,
        "client_key": pki.client_key,
        "dir": tmp_path,
    }
    config = web_config(tmp_path, text.format(**paths))
    problem = problem.format(**paths)
    env = {
        "DBHEALTH_WEB_CONFIG_FILE": str(config),
        "DBHEALTH_DATA_DIR": str(tmp_path / "data"),
        "PATH": "/usr/bin:/bin",
    }
    # Both at once, to keep the test short. Were serve to serve, the timeout fails the test.
    served = run_manage(["serve", "--bind", f"127.0.0.1:{free_port()}"], env)
    check = run_manage(["check"], env)
    _, serve_err = served.communicate(timeout=60)
    _, check_err = check.communicate(timeout=60)
    assert served.returncode == 1
    assert serve_err.startswith(f"dbhealth: DBHEALTH_WEB_CONFIG_FILE {config}: "), serve_err
    assert problem in serve_err and serve_err.count("\n") == 1, serve_err
    assert check.returncode == 1
    assert f"(dbhealth.E004) DBHEALTH_WEB_CONFIG_FILE {config}: " in check_err, check_err
    assert problem in check_err
    assert "Plaintext" not in serve_err + check_err  # a password misplaced is never shown


def test_check_warns_where_a_go_exporter_would_differ(pki, tmp_path) -> None:
    config = web_config(
        tmp_path,
        f"""
tls_server_config:
  cert_file: {pki.server_cert}
  key_file: {pki.server_key}
  min_version: TLS10
http_server_config:
  http2: true
""",
    )
    env = {**service_env(tmp_path, config), "PATH": "/usr/bin:/bin"}
    check = run_manage(["check"], env)
    _, err = check.communicate(timeout=60)
    assert check.returncode == 0, err
    assert "(dbhealth.W002)" in err and "TLS 1.2 or later" in err and "HTTP/1.1 only" in err


# --- the password check itself -------------------------------------------------------------------


def test_a_password_that_passed_is_not_checked_again() -> None:
    """Prometheus sends the same credentials every scrape: only the first pays for bcrypt."""
    users = BasicAuthUsers({"prometheus": HASH})
    started = time.perf_counter()
    assert users.check("prometheus", PASSWORD)
    first = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(10):
        assert users.check("prometheus", PASSWORD)
    cached = (time.perf_counter() - started) / 10
    assert cached < first / 20, (first, cached)
    assert not users.check("prometheus", PASSWORD + "x")
    assert not users.check("nobody", PASSWORD)
    assert not users.check("prometheus", "x" * 100)  # beyond bcrypt's 72 bytes


def test_the_cache_is_bounded_and_keeps_no_password() -> None:
    password = "cache-test-password"
    cheap = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
    users = BasicAuthUsers({f"user{n}": cheap for n in range(BasicAuthUsers.CACHE_SIZE + 10)})
    for n in range(BasicAuthUsers.CACHE_SIZE + 10):
        assert users.check(f"user{n}", password)
    assert len(users._verified) == BasicAuthUsers.CACHE_SIZE
    # Keys are HMAC-SHA256 digests under a per-process key, never the credentials.
    assert all(len(key) == 32 and b"cache-test" not in key for key in users._verified)


def test_an_unknown_user_costs_a_bcrypt_check_like_a_known_one(monkeypatch) -> None:
    """The time of a refusal does not tell whether the user exists: an unknown user is checked
    against a decoy hash of the same cost, exactly once, like a known one."""
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(8)).decode()
    users = BasicAuthUsers({"prometheus": hashed})
    checked: list[bytes] = []
    real_checkpw = bcrypt.checkpw

    def counting(password: bytes, hashed_password: bytes) -> bool:
        checked.append(hashed_password if isinstance(hashed_password, bytes) else b"")
        return real_checkpw(password, hashed_password)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    assert not users.check("prometheus", "wrong")
    assert not users.check("nobody", "wrong")
    assert len(checked) == 2
    # Same algorithm and cost ("$2b$08$"), so the same work.
    assert checked[0][:7] == checked[1][:7] == hashed.encode()[:7]
