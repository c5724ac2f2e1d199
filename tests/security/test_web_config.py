"""DBHEALTH_WEB_CONFIG_FILE: TLS, client certificates and basic auth users for `serve`, in the
Prometheus exporter-toolkit's web configuration format, against real clients: urllib and raw
ssl sockets, and a real Prometheus scraping over HTTPS.

Certificates come from a throwaway CA made with the `openssl` command; password hashes from the
bcrypt package, as `htpasswd -nBC 10` would make them.
"""

import base64
import http.client
import os
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
from typing import TypeVar

import bcrypt
import pytest
from dbhealth.serving.web_config import BasicAuthUsers

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
    check = run_manage(["check", "--deploy"], env)  # secrets: deploy checks
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


# --- (6) changes while running -------------------------------------------------------------------
# The file and the files it names are re-read when they change (at most once a second, on a
# request or a new connection): new connections and requests get the new configuration, open
# connections keep their TLS session, a file that cannot be used keeps the last good one.

T = TypeVar("T")


def wait_for(check: Callable[[], T], what: str) -> T:
    give_up_at = time.monotonic() + WAIT
    while not (result := check()):
        if time.monotonic() > give_up_at:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)
    return result


def der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


def peer_certificate(address: str, context: ssl.SSLContext, sni: str | None) -> bytes:
    """The certificate a new connection is shown; `sni` None sends no server name (nor does
    "127.0.0.1": Python sends no SNI for an IP address)."""
    host, port = address.rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        return tls.getpeercert(binary_form=True)


def no_sni_client(pki: PKI) -> ssl.SSLContext:
    context = pki.client()
    context.check_hostname = False  # still verified against the test CA
    return context


def replace_file(path: Path, text: str) -> None:
    """Write `path` as editors and config management do: a new file renamed over the old."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def log_lines(served: Served, text: str) -> list[str]:
    return [line for line in served.log.read_text().splitlines() if text in line]


@pytest.fixture(scope="module")
def next_server(pki) -> tuple[Path, Path]:
    """The service's next certificate and key, from the same CA (what a renewal brings)."""
    directory = pki.directory / "next"
    directory.mkdir()
    ca = (pki.ca, pki.directory / "dbhealth-test-ca.key")
    return make_leaf(directory, "server", ca, "IP:127.0.0.1,DNS:localhost", "serverAuth")


def secret_volume(directory: Path, files: dict[str, bytes], version: int) -> None:
    """Lay out (version 1) or update `files` as the kubelet does for a Secret volume: the files
    are in a directory of their own, `..data` links to it, and each name links through `..data`;
    an update writes a new directory and renames a new `..data` link over the old one."""
    target = directory / f"..2024_01_0{version}"
    target.mkdir()
    for name, content in files.items():
        (target / name).write_bytes(content)
    link = directory / "..data_tmp"
    link.symlink_to(target.name)
    os.replace(link, directory / "..data")
    if version == 1:
        for name in files:
            (directory / name).symlink_to(f"..data/{name}")
    else:
        shutil.rmtree(directory / f"..2024_01_0{version - 1}")


@pytest.mark.parametrize("how", ["in-place", "secret-volume"])
def test_a_renewed_certificate_is_served_to_new_connections(pki, next_server, tmp_path, how):
    volume = tmp_path / "volume"
    volume.mkdir()
    text = "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n"
    old = {"tls.crt": pki.server_cert.read_bytes(), "tls.key": pki.server_key.read_bytes()}
    new = {"tls.crt": next_server[0].read_bytes(), "tls.key": next_server[1].read_bytes()}
    if how == "in-place":
        for name, content in old.items():
            (volume / name).write_bytes(content)
        config = web_config(volume, text)
    else:  # the web config file in the volume too, as with a Secret holding all three
        secret_volume(volume, {**old, "web.yml": text.encode()}, 1)
        config = volume / "web.yml"
    env = service_env(tmp_path, config)
    with serve(env, tmp_path / "service.log", "/livez", ssl_context=pki.client()) as served:
        host, port = served.address.rsplit(":", 1)
        open_connection = http.client.HTTPSConnection(host, int(port), context=pki.client())
        open_connection.request("GET", "/livez")
        assert open_connection.getresponse().read()
        tls_socket = open_connection.sock
        assert tls_socket.getpeercert(binary_form=True) == der(pki.server_cert)
        assert peer_certificate(served.address, no_sni_client(pki), None) == der(pki.server_cert)

        if how == "in-place":  # the certificate, then the key: briefly a pair that does not match
            for name, content in new.items():
                (volume / name).write_bytes(content)
        else:
            secret_volume(volume, {**new, "web.yml": text.encode()}, 2)

        # Without SNI (by IP address, or none at all), and with it.
        wait_for(
            lambda: (
                peer_certificate(served.address, no_sni_client(pki), None) == der(next_server[0])
            ),
            "the renewed certificate",
        )
        assert peer_certificate(served.address, pki.client(), "localhost") == der(next_server[0])
        assert https_get(served.address, pki.client(), "/metrics") == 200

        # The connection open since before keeps its session and is still served.
        open_connection.request("GET", "/livez")
        reply = open_connection.getresponse()
        assert reply.status == 200 and reply.read()
        assert open_connection.sock is tls_socket
        assert tls_socket.getpeercert(binary_form=True) == der(pki.server_cert)
        open_connection.close()

        assert len(log_lines(served, f"DBHEALTH_WEB_CONFIG_FILE {config} reloaded: TLS")) == 1
        # The key written a moment after the certificate is no problem worth a line.
        assert log_lines(served, "not reloaded") == []


def test_users_and_headers_follow_the_file(tmp_path) -> None:
    other_password = "another-scrape-password"
    other_hash = bcrypt.hashpw(other_password.encode(), bcrypt.gensalt(4)).decode()
    config = web_config(tmp_path, f'basic_auth_users:\n  prometheus: "{HASH}"\n')
    env = service_env(tmp_path, config)
    with serve(env, tmp_path / "service.log", "/livez") as served:
        prometheus, grafana = basic("prometheus", PASSWORD), basic("grafana", other_password)
        assert served.get("/metrics", headers=prometheus)[0] == 200
        assert served.get("/metrics", headers=grafana)[0] == 401

        # A user added, with a header; written in place (briefly empty, then complete).
        config.write_text(
            f'basic_auth_users:\n  prometheus: "{HASH}"\n  grafana: "{other_hash}"\n'
            "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        )
        wait_for(lambda: served.get("/metrics", headers=grafana)[0] == 200, "the added user")
        assert served.get("/metrics", headers=prometheus)[0] == 200
        assert fetch(served, "/livez").headers["X-Frame-Options"] == "deny"

        # A user removed: its password, verified (and cached) before, no longer passes.
        replace_file(config, f'basic_auth_users:\n  grafana: "{other_hash}"\n')
        wait_for(lambda: served.get("/metrics", headers=prometheus)[0] == 401, "the removal")
        assert served.get("/metrics", headers=grafana)[0] == 200
        assert "X-Frame-Options" not in fetch(served, "/livez").headers

        # No users at all: the endpoints are open again, as with no basic_auth_users at start.
        replace_file(config, "{}\n")
        wait_for(lambda: served.get("/metrics")[0] == 200, "no users")
        assert log_lines(served, "not reloaded") == []
        assert len(log_lines(served, "reloaded: plain HTTP")) == 3


def test_a_file_that_cannot_be_used_keeps_the_last_good_one(pki, next_server, tmp_path) -> None:
    """Each problem is logged in one line, once, however many requests and connections follow;
    the old certificate and users serve meanwhile; a good file is logged once more."""
    for name, source in (("tls.crt", pki.server_cert), ("tls.key", pki.server_key)):
        shutil.copy(source, tmp_path / name)
    good = (
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n"
        f'basic_auth_users:\n  prometheus: "{HASH}"\n'
    )
    config = web_config(tmp_path, good)
    env = service_env(tmp_path, config)
    problems = {
        "tls_server_config: [\n": "not valid YAML: ",
        good + "rate_limt: {}\n": "unknown key 'rate_limt'",
        good.replace("tls.crt", "missing.crt"): f"cert_file {tmp_path}/missing.crt: cannot read",
        good.replace("tls.key", str(next_server[1])): "the key does not belong to the certificate",
        f'basic_auth_users:\n  prometheus: "{HASH}"\n': "TLS cannot be turned off while dbhealth"
        " runs (its port is either TLS or plain HTTP): restart it to apply this file",
    }
    prefix = f"DBHEALTH_WEB_CONFIG_FILE {config} not reloaded, the last good configuration "
    with serve(env, tmp_path / "service.log", "/livez", ssl_context=pki.client()) as served:

        def old_one_serves() -> None:  # over a new connection each time: a check every second
            assert peer_certificate(served.address, no_sni_client(pki), None) == der(
                pki.server_cert
            )
            assert served.get("/metrics", headers=basic("prometheus", PASSWORD))[0] == 200
            assert served.get("/metrics")[0] == 401

        for text, problem in problems.items():
            replace_file(config, text)

            def logged(problem: str = problem) -> list[str]:
                old_one_serves()
                return log_lines(served, problem)

            wait_for(logged, f"the line for {problem!r}")
            for _ in range(20):
                old_one_serves()
        lines = log_lines(served, "not reloaded")
        scraped = served.get("/metrics", headers=basic("prometheus", PASSWORD))[1]
        assert "\ndbhealth_web_config_last_reload_successful 0.0\n" in scraped
        for problem in problems.values():
            assert len([line for line in lines if problem in line]) == 1, (problem, lines)
        assert all(prefix + "stays in use: " in line for line in lines), lines
        assert len(lines) == len(problems), lines

        # A good file again: one more line, and its change applies.
        replace_file(config, good.replace("prometheus", "grafana"))
        wait_for(
            lambda: served.get("/metrics", headers=basic("grafana", PASSWORD))[0] == 200,
            "the good file",
        )
        assert len(log_lines(served, "reloaded: TLS")) == 1
        scraped = served.get("/metrics", headers=basic("grafana", PASSWORD))[1]
        assert "\ndbhealth_web_config_last_reload_successful 1.0\n" in scraped
        assert len(log_lines(served, "not reloaded")) == len(problems)
        log = served.log.read_text()
        assert PASSWORD not in log and HASH not in log and "PRIVATE KEY" not in log


def test_a_changed_client_ca_and_client_auth_type_apply(pki, tmp_path) -> None:
    client_ca = tmp_path / "clients-ca.crt"
    shutil.copy(pki.ca, client_ca)
    text = (
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
        "  client_auth_type: {auth}\n  client_ca_file: clients-ca.crt\n"
    )
    config = web_config(tmp_path, text.format(auth="RequireAndVerifyClientCert"))
    env = service_env(tmp_path, config)
    ours, stranger = pki.client(certificate=True), pki.client(stranger=True)
    tls12 = {"max_version": ssl.TLSVersion.TLSv1_2}  # a refusal is then the handshake's own
    with serve(env, tmp_path / "service.log", "/livez", ssl_context=ours) as served:
        assert https_get(served.address, ours, "/metrics") == 200
        with pytest.raises(ssl.SSLError):
            negotiated(served.address, pki.client(stranger=True, **tls12))

        # The CA file now holds the other CA: its clients get in, ours no longer.
        client_ca.write_bytes((pki.directory / "stranger-ca.crt").read_bytes())

        def stranger_gets_in() -> bool:
            try:
                return https_get(served.address, stranger, "/metrics") == 200
            except OSError:
                return False

        wait_for(stranger_gets_in, "the new client CA")
        with pytest.raises(ssl.SSLError):
            negotiated(served.address, pki.client(certificate=True, **tls12))

        # client_auth_type too (a context's verify mode, which an sni_callback could not swap).
        replace_file(config, text.format(auth="VerifyClientCertIfGiven"))

        def no_certificate_gets_in() -> bool:
            try:
                return https_get(served.address, pki.client(), "/metrics") == 200
            except OSError:
                return False

        wait_for(no_certificate_gets_in, "VerifyClientCertIfGiven")
        assert https_get(served.address, stranger, "/metrics") == 200
        assert log_lines(served, "not reloaded") == []
