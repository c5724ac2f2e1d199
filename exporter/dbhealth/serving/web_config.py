"""DBHEALTH_WEB_CONFIG_FILE: TLS and basic auth for the dbhealth service, in the format of the
Prometheus exporter-toolkit web configuration file (what Go exporters read with --web.config.file).

The file is read when `manage.py serve` starts: a problem then stops start-up with one line naming
the file, and `manage.py check` reports it (dbhealth.E004). Relative paths in it are relative to
the file's directory, as in the toolkit.

While the service runs, the file and the files it names (cert_file, key_file, client_ca_file) are
re-read when they change, as the toolkit re-reads them for every connection and request, without
restarts (LiveWebConfig): at most once a second, on a request or a new connection, they are
stat()ed (no read; symlinks followed, so a Kubernetes Secret volume's swap of its `..data` link
shows), and loaded again only when one has changed (inode, size, mtime or ctime).
- TLS: each new connection gets the context of the file as it is then (ReloadingContext), with
  everything in tls_server_config: certificate, key, client CA, client_auth_type, versions,
  cipher suites. Connections already open keep their session; a session from before a change is
  never resumed under the new context (each context has its own session cache and ticket keys),
  so a new client CA applies to every new handshake.
- basic_auth_users and http_server_config.headers: each new request gets the file's, also on a
  connection opened before. A password verified before stays cached only while its user's hash
  is unchanged.
- A changed file that cannot be used (anything that would stop start-up) keeps the last good
  configuration serving and is logged in one line naming the file and the problem, once, until
  the files change again; a good one again is logged in one line too. (The toolkit instead
  fails handshakes and answers 500 while its file is broken.) Turning TLS on or off needs a
  restart, since the port is either TLS or plain HTTP: such a file is refused the same way.
- Files are best replaced by renaming a new one over the old (as Kubernetes, cert-manager and
  most tools do). Written in place, a certificate and then its key is fine (a load failing on
  files changed within the last second is logged only if the next check finds them unchanged),
  but a rewrite in place that keeps the size within one tick of the filesystem's clock (a few
  ms) leaves no trace in stat() and is not seen.

It applies only to the service `serve` runs. A host project that includes dbhealth.urls serves
them over its own HTTP server, which this file cannot configure: there the token settings
(DBHEALTH_AUTH_TOKEN / DBHEALTH_AUTH_TOKEN_FILE) protect the endpoints, and TLS is the host's.

What is honoured, what is not, and where Python's ssl module differs from Go's crypto/tls:

tls_server_config (TLS is on when the section is not empty; cert_file and key_file are then both
required):
- cert_file, key_file: PEM, the key unencrypted (the toolkit has no passphrase either).
- client_ca_file, or client_ca (the PEM text inline), not both.
- client_auth_type, mapped onto ssl.SSLContext.verify_mode. Python's ssl verifies every client
  certificate it receives against client_ca_file, so every value but NoClientCert needs one:
    NoClientCert (default)      CERT_NONE      same as Go
    VerifyClientCertIfGiven     CERT_OPTIONAL  same as Go
    RequireAndVerifyClientCert  CERT_REQUIRED  same as Go: the one that authenticates clients
    RequestClientCert           CERT_OPTIONAL  stricter than Go: Go accepts any certificate
                                               unverified, Python fails the handshake of a
                                               client whose certificate the CA does not verify
    RequireAnyClientCert        CERT_REQUIRED  stricter than Go: the certificate must verify
    (RequireClientCert, the toolkit's old name for RequireAnyClientCert, is accepted too.)
- min_version (default TLS12), max_version (default: the newest): TLS10, TLS11, TLS12, TLS13, set
  as the context's minimum_version and maximum_version. OpenSSL 3 refuses TLS 1.0 and 1.1 at its
  default security level whatever min_version says; `check` warns about it (dbhealth.W002).
- cipher_suites: Go's names (tls.CipherSuites()), translated to OpenSSL's. As in Go, the TLS 1.3
  suites cannot be configured: their names are accepted and have no effect.
- prefer_server_cipher_suites (default true): ssl.OP_CIPHER_SERVER_PREFERENCE.
- refused, with a message: cert and key inline (Python loads certificates from files only),
  client_allowed_sans (Python's ssl has no hook to check the client certificate's names during
  the handshake), curve_preferences (Python 3.11 can set one curve, not a preference list).

http_server_config:
- headers: the toolkit's five (Content-Security-Policy, Strict-Transport-Security,
  X-Content-Type-Options: nosniff, X-Frame-Options: deny|sameorigin, X-XSS-Protection), set on
  every response.
- http2: accepted; dbhealth speaks HTTP/1.1 only (uvicorn's h11), which every client falls back
  to, so `true` (the toolkit's default) is reported by `check` (dbhealth.W002) and changes nothing.

basic_auth_users: user name -> bcrypt hash ($2y$, $2a$ or $2b$, e.g. from
`htpasswd -nBC 10 "" | tr -d ':\\n'`). Checked with the bcrypt package. Alongside the token
settings: when both are configured, either the token or a user's password opens the endpoints.
/livez and /readyz stay open. See BasicAuthUsers for the cost of a check and the cache.

rate_limit (a newer toolkit section) is refused: dbhealth has no rate limiter.
Unknown keys and repeated keys are refused, as the toolkit's strict YAML decoding does.
"""

import dataclasses
import functools
import hmac
import logging
import os
import re
import secrets
import ssl
import threading
import time
import warnings
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from dbhealth.serving.bcrypt_queue import FairChecks, Verify, client_key
from dbhealth.serving.reload_outcome import ReloadOutcome

logger = logging.getLogger(__name__)

SETTING = "DBHEALTH_WEB_CONFIG_FILE"

TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
TLS_KEYS = (
    "cert_file",
    "key_file",
    "client_ca_file",
    "client_ca",
    "client_auth_type",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
)
HTTP_KEYS = ("headers", "http2")
REFUSED = {
    "rate_limit": "dbhealth has no rate limiter (DBHEALTH_MAX_CONNECTIONS and "
    "DBHEALTH_CONNECTIONS_PER_CLIENT bound connections instead)",
    "tls_server_config.cert": "Python's ssl loads certificates from files only: use cert_file",
    "tls_server_config.key": "Python's ssl loads keys from files only: use key_file",
    "tls_server_config.client_allowed_sans": "Python's ssl cannot check the client "
    "certificate's names during the handshake: give those clients a CA of their own instead",
    "tls_server_config.curve_preferences": "Python's ssl cannot set a curve preference list",
}

CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "RequireClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TLS_VERSIONS = {
    "TLS10": "TLSv1",
    "TLS11": "TLSv1_1",
    "TLS12": "TLSv1_2",
    "TLS13": "TLSv1_3",
}
# Go's names for the suites of tls.CipherSuites(), the ones the toolkit accepts, in OpenSSL's words.
TLS12_SUITES = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
TLS13_SUITES = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
# The toolkit's headers; a list restricts the value (compared exactly, as the toolkit does).
HEADERS: dict[str, tuple[str, ...]] = {
    "Content-Security-Policy": (),
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
}
BCRYPT_HASH = re.compile(r"\$2[aby]\$(?P<cost>\d\d)\$[./A-Za-z0-9]{53}")
BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


class Problem(ValueError):
    """What is wrong with the file, in one line (without the file's name)."""


class BasicAuthUsers:
    """The users of basic_auth_users and a check of their passwords.

    A bcrypt check costs what the hash's cost says: 80 ms of CPU at cost 10 and 320 ms at cost 12
    on the test machine (the toolkit's docs say ~70 ms at 10), more while the machine is busy.
    Prometheus sends the same credentials on every scrape, so like the toolkit this caches the
    (user, password) pairs that passed, for as long as the users and their hashes stay the same
    (a reload of the file with other users starts afresh): a scrape then pays an HMAC and a
    dictionary look-up. Unlike the toolkit, only successes are cached, so a flood of wrong
    passwords cannot push the real ones out. The key is an HMAC-SHA256 of user and password
    under a key made at start-up, so the cache holds no password and no fast hash of one that
    could be tested offline without that key. It is bounded (CACHE_SIZE pairs, least recently
    used dropped first).

    Checks that miss the cache run one at a time and are shared fairly between clients
    (serving/bcrypt_queue.py), so a wrong-password flood from one address neither costs more than
    one core nor keeps another client's first check waiting for more than one check per client;
    a cached pair and the bearer token never wait at all.

    A user not in the file is checked against a decoy hash with the highest cost in the file, so
    the time of an answer does not tell whether the user exists (exactly so when every user has
    the same cost; otherwise an existing user with a lower cost answers faster).
    """

    CACHE_SIZE = 64

    def __init__(self, hashes: dict[str, str], verify: Verify | None = None) -> None:
        self._hashes = {user: hashed.encode("ascii") for user, hashed in hashes.items()}
        cost = max(int(hashed[4:6]) for hashed in hashes.values())
        # A valid salt of that cost and a random checksum: checking against it costs a full
        # bcrypt round and matches no password. No hashing is spent at start-up.
        checksum = "".join(secrets.choice(BCRYPT_ALPHABET) for _ in range(31))
        self._decoy = _salt(cost) + checksum.encode()
        self._cache_key = secrets.token_bytes(32)
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._checks = FairChecks(verify or _bcrypt_verify)

    def __len__(self) -> int:
        return len(self._hashes)

    def same_users(self, other: "BasicAuthUsers") -> bool:
        """The same users with the same hashes (so the same passwords pass)."""
        return self._hashes == other._hashes

    def check(self, user: str, password: str, client: str = "") -> bool:
        """True when `password` is the password of `user`; waits for a check when needed."""
        return self.cached(user, password) or self.start_check(user, password, client).result()

    def cached(self, user: str, password: str) -> bool:
        """True when this pair passed before (no bcrypt, no waiting)."""
        key = self._key(user, password)
        with self._cache_lock:
            if key in self._verified:
                self._verified.move_to_end(key)
                return True
        return False

    def start_check(self, user: str, password: str, client: str) -> Future:
        """The bcrypt check of a pair not cached, queued fairly for `client` (client_key of the
        address): a future of True when the password is the user's (and then cached)."""
        hashed = self._hashes.get(user)
        checked = self._checks.submit(client_key(client), password.encode(), hashed or self._decoy)
        answer: Future = Future()

        def settle(done: Future) -> None:
            matches = done.exception() is None and done.result() and hashed is not None
            if matches:
                key = self._key(user, password)
                with self._cache_lock:
                    self._verified[key] = None
                    while len(self._verified) > self.CACHE_SIZE:
                        self._verified.popitem(last=False)
            answer.set_result(bool(matches))

        checked.add_done_callback(settle)
        return answer

    def _key(self, user: str, password: str) -> bytes:
        user_bytes = user.encode()
        return hmac.new(
            self._cache_key,
            len(user_bytes).to_bytes(4, "big") + user_bytes + password.encode(),
            sha256,
        ).digest()


def _bcrypt_verify(password: bytes, hashed: bytes) -> bool:
    import bcrypt

    return bcrypt.checkpw(password, hashed)


def _salt(cost: int) -> bytes:
    """`$2b$<cost>$` and 22 characters of random salt (gensalt costs no hashing)."""
    import bcrypt

    return bcrypt.gensalt(cost)


@dataclass(frozen=True)
class WebConfig:
    path: Path
    tls: ssl.SSLContext | None = None
    users: BasicAuthUsers | None = None
    headers: tuple[tuple[str, str], ...] = ()
    # What is honoured differently than a Go exporter would: `check` shows these as warnings.
    notes: tuple[str, ...] = ()
    summary: str = ""
    # Every file read, with its FileState from just before it was read: any change since shows.
    files: tuple[tuple[Path, tuple], ...] = ()


def configured_path() -> str:
    """The file the settings name (DBHEALTH_WEB_CONFIG_FILE), else the environment's; "" for none.

    The environment counts with any settings module, so a host project's service can be given
    one as `DBHEALTH_WEB_CONFIG_FILE=... python -m django serve`, like a Go exporter's flag."""
    return getattr(settings, SETTING, "") or os.environ.get(SETTING, "") or ""


def configured_web_config() -> WebConfig | None:
    """The web configuration the settings name, None for none; ImproperlyConfigured, with one
    line naming the file and the problem, for a file that cannot be used."""
    path = configured_path()
    if not path:
        return None
    try:
        return load_web_config(Path(path))
    except Problem as exc:
        raise ImproperlyConfigured(f"{SETTING} {path}: {exc}") from None


def load_web_config(path: Path, files: list | None = None) -> WebConfig:
    """Parse and apply `path`: every certificate is loaded here, so a bad one is found now.

    `files` collects (path, file_state(path)) of every file read, each taken before the read,
    also when a Problem ends the load: a change to any of them is what calls for another try."""
    files = [] if files is None else files
    document = _read_yaml(path, files)
    if not isinstance(document, dict):
        raise Problem(f"expected a mapping of {', '.join(TOP_KEYS)}, not {_kind(document)}")
    _known_keys(document, TOP_KEYS, "")
    base = path.parent
    notes: list[str] = []
    tls, tls_summary = _tls(_section(document, "tls_server_config"), base, notes, files)
    headers = _http(_section(document, "http_server_config"), notes)
    users = _users(document.get("basic_auth_users"))
    summary = ", ".join(
        part
        for part in (
            tls_summary or "plain HTTP",
            f"basic auth for {len(users)} user(s)" if users else "",
            f"{len(headers)} response header(s)" if headers else "",
        )
        if part
    )
    return WebConfig(path, tls, users, headers, tuple(notes), summary, tuple(files))


def file_state(path: Path) -> tuple:
    """What tells a changed file without reading it: os.stat, following symlinks (a Kubernetes
    Secret volume swaps the `..data` link its files point through, so their target is new), or
    the error for a file that cannot be looked at."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return ("error", exc.errno)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class LiveWebConfig:
    """The web configuration in use, re-read when the file or a file it names changes.

    current() is called for every request and every new TLS connection. At most once every
    CHECK_INTERVAL seconds it stats the files the last load read (file_state: no read); only when
    one has changed is the file loaded again. A good file replaces the configuration in use and
    is logged in one line; one that cannot be used (or that would turn TLS on or off, which only
    a restart can) keeps the last good configuration and is logged in one line, once, until the
    files change again. A load that fails while the files are fresh (changed within
    SETTLE_SECONDS) is not logged until the next check finds them unchanged, so writing a
    certificate and then its key logs nothing when the pair is complete by then.

    Checks never wait for one another: a caller that finds another check running gets the
    configuration in use, so the event loop never waits for a thread's load.
    """

    CHECK_INTERVAL = 1.0
    SETTLE_SECONDS = 1.0

    def __init__(self, config: WebConfig) -> None:
        self.path = config.path
        self.config = config
        self.outcome = ReloadOutcome("web_config", "web configuration file")
        self._files = config.files
        self._pending = ""  # the problem of a load that failed while the files were fresh
        self._next_check = time.monotonic() + self.CHECK_INTERVAL
        self._checking = threading.Lock()

    def current(self) -> WebConfig:
        if time.monotonic() < self._next_check or not self._checking.acquire(blocking=False):
            return self.config
        try:
            self._next_check = time.monotonic() + self.CHECK_INTERVAL
            if self.changed():
                self._reload()
            elif self._pending:  # unchanged since a load failed on fresh files: it stands
                self._failed(self._pending)
        finally:
            self._checking.release()
        return self.config

    def changed(self) -> bool:
        """True when a file the last load read is not what it was then (stats only)."""
        return any(file_state(path) != state for path, state in self._files)

    def _reload(self) -> None:
        files: list = []
        try:
            config = load_web_config(self.path, files)
            if (config.tls is None) != (self.config.tls is None):
                raise Problem(
                    "TLS cannot be turned "
                    + ("off" if config.tls is None else "on")
                    + " while dbhealth runs (its port is either TLS or plain HTTP): restart it "
                    "to apply this file"
                )
        except Exception as exc:  # never let a load stop a request or a handshake
            self._files = tuple(files)
            problem = str(exc) if isinstance(exc, Problem) else f"{type(exc).__name__}: {exc}"
            newest = max((state[4] for _, state in files if len(state) == 5), default=0)
            if time.time_ns() - newest < self.SETTLE_SECONDS * 1e9:
                self._pending = problem  # perhaps still being written: the next check decides
            else:
                self._failed(problem)
            return
        old_users, new_users = self.config.users, config.users
        if old_users is not None and new_users is not None and old_users.same_users(new_users):
            config = dataclasses.replace(config, users=old_users)  # keeps its verified cache
        self.config, self._files, self._pending = config, config.files, ""
        self.outcome.succeeded(f"{SETTING} {self.path}", config.summary)

    def _failed(self, problem: str) -> None:
        self._pending = ""
        self.outcome.failed(f"{SETTING} {self.path}", problem, every_time=False)


class ReloadingContext(ssl.SSLContext):
    """The SSLContext the server listens with: every new connection gets an SSL object of the
    current configuration's context (asyncio makes one per connection with wrap_bio), so its
    certificate, key, client CA, client_auth_type, versions and cipher suites all apply to that
    connection's handshake, and connections already open keep theirs.

    (An sni_callback could swap only part of that: OpenSSL's SSL_set_SSL_CTX changes the
    certificate, key and CA store but keeps the first context's verify mode, versions and
    ciphers. It is called without SNI too, with server_name None.)"""

    def __new__(cls, live: LiveWebConfig) -> "ReloadingContext":
        context = super().__new__(cls, ssl.PROTOCOL_TLS_SERVER)
        context.live = live
        return context

    def __init__(self, live: LiveWebConfig) -> None:
        pass

    def _current(self) -> ssl.SSLContext:
        tls = self.live.current().tls
        assert tls is not None  # a file turning TLS off is refused
        return tls

    def wrap_bio(self, incoming, outgoing, server_side=False, server_hostname=None, session=None):
        return self._current().wrap_bio(incoming, outgoing, server_side, server_hostname, session)

    def wrap_socket(self, sock, *args, **kwargs):
        return self._current().wrap_socket(sock, *args, **kwargs)


# The web configuration of the service this process runs (set by server.build_server);
# None in a host's web workers, where dbhealth.urls is included and the host serves HTTP.
_active: LiveWebConfig | None = None


def activate(config: WebConfig | None) -> None:
    global _active
    _active = LiveWebConfig(config) if config is not None else None


def active() -> LiveWebConfig | None:
    """The service's web configuration and the outcome of its reloads, None for none."""
    return _active


def active_users() -> BasicAuthUsers | None:
    return _active.current().users if _active is not None else None


def active_headers() -> tuple[tuple[str, str], ...]:
    return _active.current().headers if _active is not None else ()


def serving_context() -> ReloadingContext:
    """The context to listen with when the active configuration has TLS (see ReloadingContext)."""
    assert _active is not None and _active.config.tls is not None
    return ReloadingContext(_active)


def _read_yaml(path: Path, files: list):
    import yaml

    files.append((path, file_state(path)))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise Problem(f"cannot read ({reason})") from None
    try:
        document = yaml.load(text, Loader=_strict_loader())  # a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise Problem(f"not valid YAML: {exc.problem or exc.context}{where}") from None
    except yaml.YAMLError as exc:
        raise Problem(f"not valid YAML: {' '.join(str(exc).split())}") from None
    if document is None:
        # As with the token file, an empty file must not silently mean "nothing to protect".
        raise Problem("the file is empty (write {} for plain HTTP without basic auth)")
    return document


@functools.cache
def _strict_loader():
    import yaml

    class StrictLoader(yaml.SafeLoader):
        """SafeLoader that refuses a key given twice (the toolkit's yaml.UnmarshalStrict does)."""

    def construct_mapping(loader, node, deep=False):
        loader.flatten_mapping(node)
        seen = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            try:
                repeated = key in seen
                seen.add(key)
            except TypeError:
                continue  # unhashable: construct_mapping says so
            if repeated:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark
                )
        return loader.construct_mapping(node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return StrictLoader


def _kind(value) -> str:
    if value is None:
        return "nothing"
    kinds = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}
    return kinds.get(type(value), "a number" if isinstance(value, int | float) else "a value")


def _known_keys(mapping: dict, known: tuple[str, ...], prefix: str) -> None:
    for key in mapping:
        name = f"{prefix}{key}"
        if name in REFUSED:
            raise Problem(f"{name} is not supported: {REFUSED[name]}")
        if key not in known:
            where = f"{prefix.rstrip('.')}: " if prefix else ""
            raise Problem(f"{where}unknown key {key!r} (known: {', '.join(known)})")


def _section(document: dict, name: str) -> dict:
    value = document.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Problem(f"{name} must be a mapping, not {_kind(value)}")
    return value


def _string(section: dict, key: str, where: str) -> str:
    value = section.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Problem(f"{where}.{key} must be a string, not {_kind(value)}")
    return value


def _file(section: dict, key: str, base: Path, files: list) -> tuple[Path | None, bytes]:
    """The file `key` names (relative to the web config's directory) and its content."""
    name = _string(section, key, "tls_server_config")
    if not name:
        return None, b""
    path = base / name  # an absolute name stays as it is
    files.append((path, file_state(path)))
    try:
        return path, path.read_bytes()
    except OSError as exc:
        raise Problem(
            f"tls_server_config.{key} {path}: cannot read ({exc.strerror or exc})"
        ) from None


def _tls(
    section: dict, base: Path, notes: list[str], files: list
) -> tuple[ssl.SSLContext | None, str]:
    _known_keys(section, TLS_KEYS, "tls_server_config.")
    if not section:
        return None, ""
    cert_path, cert_pem = _file(section, "cert_file", base, files)
    key_path, key_pem = _file(section, "key_file", base, files)
    for missing, given in (("cert_file", cert_path), ("key_file", key_path)):
        if given is None:
            raise Problem(
                f"tls_server_config.{missing} is required: TLS needs cert_file and key_file"
            )
    if b"-----BEGIN CERTIFICATE-----" not in cert_pem:
        raise Problem(f"tls_server_config.cert_file {cert_path}: no PEM certificate in it")
    if b"ENCRYPTED" in key_pem:
        raise Problem(
            f"tls_server_config.key_file {key_path}: the key is encrypted; give it unencrypted"
        )
    if b"PRIVATE KEY-----" not in key_pem:
        raise Problem(f"tls_server_config.key_file {key_path}: no PEM private key in it")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    lowest = _version(section, "min_version", "TLS12")
    highest = _version(section, "max_version", "")
    with warnings.catch_warnings():  # TLSVersion.TLSv1 and TLSv1_1 are deprecated names
        warnings.simplefilter("ignore", DeprecationWarning)
        if highest and list(TLS_VERSIONS).index(highest) < list(TLS_VERSIONS).index(lowest):
            raise Problem(f"tls_server_config: min_version {lowest} is above max_version {highest}")
        if highest in ("TLS10", "TLS11"):
            raise Problem(
                f"tls_server_config.max_version {highest}: OpenSSL 3 refuses TLS 1.0 and 1.1 at "
                "its default security level, so no client could connect; use TLS12 or TLS13"
            )
        context.minimum_version = getattr(ssl.TLSVersion, TLS_VERSIONS[lowest])
        if highest:
            context.maximum_version = getattr(ssl.TLSVersion, TLS_VERSIONS[highest])
    if lowest in ("TLS10", "TLS11"):
        notes.append(
            f"tls_server_config.min_version {lowest}: OpenSSL 3 refuses TLS 1.0 and 1.1 at its "
            "default security level, so clients need TLS 1.2 or later"
        )
    try:
        context.load_cert_chain(cert_path, key_path, password=_no_password)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            problem = "the key does not belong to the certificate"
        else:
            problem = f"OpenSSL cannot use them ({exc.reason or exc.strerror or exc})"
        raise Problem(
            f"tls_server_config: cert_file {cert_path}, key_file {key_path}: {problem}"
        ) from None

    auth_type = _string(section, "client_auth_type", "tls_server_config") or "NoClientCert"
    if auth_type not in CLIENT_AUTH:
        raise Problem(
            f"tls_server_config.client_auth_type {auth_type!r} is not one of "
            f"{', '.join(name for name in CLIENT_AUTH if name != 'RequireClientCert')}"
        )
    ca_path, ca_pem = _file(section, "client_ca_file", base, files)
    ca_text = _string(section, "client_ca", "tls_server_config")
    if ca_path is not None and ca_text:
        raise Problem("tls_server_config: give client_ca_file or client_ca, not both")
    has_ca = ca_path is not None or bool(ca_text)
    if has_ca and auth_type == "NoClientCert":
        # The toolkit refuses this too: a CA that verifies nothing is a mistake.
        raise Problem(
            "tls_server_config: a client CA is configured but client_auth_type is "
            "NoClientCert; use RequireAndVerifyClientCert to authenticate clients"
        )
    if not has_ca and auth_type != "NoClientCert":
        raise Problem(
            f"tls_server_config.client_auth_type {auth_type} needs client_ca_file: Python's ssl "
            "verifies every client certificate it receives, against that CA"
        )
    if has_ca:
        try:
            if ca_path is not None:
                context.load_verify_locations(cadata=ca_pem.decode("ascii", "replace"))
            else:
                context.load_verify_locations(cadata=ca_text)
        except ssl.SSLError as exc:
            where = f"client_ca_file {ca_path}" if ca_path is not None else "client_ca"
            raise Problem(
                f"tls_server_config.{where}: no usable PEM certificate in it ({exc.reason or exc})"
            ) from None
    context.verify_mode = CLIENT_AUTH[auth_type]

    _ciphers(context, section.get("cipher_suites"))
    prefer = section.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise Problem(
            "tls_server_config.prefer_server_cipher_suites must be true or false, "
            f"not {_kind(prefer)}"
        )
    if prefer:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    clients = {
        ssl.CERT_NONE: "no client certificates",
        ssl.CERT_OPTIONAL: "client certificates verified if given",
        ssl.CERT_REQUIRED: "client certificates required",
    }[context.verify_mode]
    return context, f"TLS ({lowest} to {highest or 'TLS13'}, {clients})"


def _no_password() -> bytes:
    """The passphrase callback: never prompt on a terminal for an encrypted key."""
    return b""


def _version(section: dict, key: str, default: str) -> str:
    value = _string(section, key, "tls_server_config") or default
    if value and value not in TLS_VERSIONS:
        raise Problem(f"tls_server_config.{key} {value!r} is not one of {', '.join(TLS_VERSIONS)}")
    return value


def _ciphers(context: ssl.SSLContext, names) -> None:
    if names is None:
        return
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise Problem("tls_server_config.cipher_suites must be a list of names")
    chosen = []
    for name in names:
        if name in TLS12_SUITES:
            chosen.append(TLS12_SUITES[name])
        elif name not in TLS13_SUITES:
            raise Problem(
                f"tls_server_config.cipher_suites: unknown cipher suite {name!r} (Go's names, "
                "e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)"
            )
    if not chosen and names:
        raise Problem(
            "tls_server_config.cipher_suites names TLS 1.3 suites only, which cannot be "
            "configured (in Go neither): name TLS 1.2 suites or leave the key out"
        )
    if chosen:
        context.set_ciphers(":".join(chosen))


def _http(section: dict, notes: list[str]) -> tuple[tuple[str, str], ...]:
    _known_keys(section, HTTP_KEYS, "http_server_config.")
    http2 = section.get("http2", True)
    if not isinstance(http2, bool):
        raise Problem(f"http_server_config.http2 must be true or false, not {_kind(http2)}")
    if http2 and "http2" in section:
        notes.append(
            "http_server_config.http2 true: dbhealth speaks HTTP/1.1 only, which clients "
            "use instead"
        )
    headers = section.get("headers")
    if headers is None:
        return ()
    if not isinstance(headers, dict):
        raise Problem(f"http_server_config.headers must be a mapping, not {_kind(headers)}")
    chosen = []
    for name, value in headers.items():
        if name not in HEADERS:
            raise Problem(
                f"http_server_config.headers: header {name!r} cannot be configured "
                f"(one of {', '.join(HEADERS)})"
            )
        if value is None or value == "":
            continue  # "Unset if blank."
        if not isinstance(value, str) or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise Problem(f"http_server_config.headers.{name} must be a one-line string")
        if HEADERS[name] and value not in HEADERS[name]:
            raise Problem(
                f"http_server_config.headers.{name} {value!r} is not one of "
                f"{', '.join(HEADERS[name])}"
            )
        chosen.append((name, value))
    return tuple(chosen)


def _users(value) -> BasicAuthUsers | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Problem(
            f"basic_auth_users must be a mapping of user to bcrypt hash, not {_kind(value)}"
        )
    hashes: dict[str, str] = {}
    for user, hashed in value.items():
        if not isinstance(user, str) or not user:
            raise Problem(
                f"basic_auth_users: user name {user!r} must be a non-empty string (quote it)"
            )
        if ":" in user:
            raise Problem(
                f"basic_auth_users: user name {user!r} contains ':', which basic auth cannot send"
            )
        # Never show the value: it may be a password written where its hash belongs.
        if not isinstance(hashed, str) or not BCRYPT_HASH.fullmatch(hashed):
            raise Problem(
                f"basic_auth_users: the password of {user!r} is not a bcrypt hash ($2y$, $2a$ or "
                "$2b$, 60 characters, e.g. from htpasswd -nBC 10 \"\" | tr -d ':\\n')"
            )
        cost = int(BCRYPT_HASH.fullmatch(hashed).group("cost"))
        if not 4 <= cost <= 31:
            raise Problem(f"basic_auth_users: the hash of {user!r} has cost {cost}, not 4 to 31")
        hashes[user] = hashed
    # An empty mapping means no basic auth, as in the toolkit.
    return BasicAuthUsers(hashes) if hashes else None
