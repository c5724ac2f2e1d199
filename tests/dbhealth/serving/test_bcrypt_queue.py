"""Password checks shared fairly between clients: a flood of wrong passwords from one address
neither queues another client's first check behind it nor makes the flood's own extra requests
wait (they are answered at once, without a check).

The checks here are real bcrypt checks (cost 4), with the first one held until the test lets it
go, so the order in which checks ran is what is asserted, never a time.
"""

import threading

import bcrypt
import pytest
from dbhealth.serving.bcrypt_queue import MAX_WAITING_PER_CLIENT, FairChecks, client_key
from dbhealth.serving.web_config import BasicAuthUsers

PASSWORD = b"the-right-password"
HASHED = bcrypt.hashpw(PASSWORD, bcrypt.gensalt(4))


class Recorded:
    """A bcrypt check that records what it checked and can hold the first check."""

    def __init__(self) -> None:
        self.checked: list[bytes] = []
        self.first_started = threading.Event()
        self.release = threading.Event()

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        if not self.checked:
            self.checked.append(password)
            self.first_started.set()
            self.release.wait(60)
        else:
            self.checked.append(password)
        return bcrypt.checkpw(password, hashed)


def test_a_new_client_waits_for_one_check_of_a_flooding_client_not_for_its_queue():
    verify = Recorded()
    checks = FairChecks(verify)
    flood = [checks.submit("10.0.0.1", b"guess-0", HASHED)]
    assert verify.first_started.wait(30)  # guess-0 is being checked, held there
    flood += [checks.submit("10.0.0.1", f"guess-{n}".encode(), HASHED) for n in range(1, 250)]
    legitimate = checks.submit("10.0.0.2", PASSWORD, HASHED)
    verify.release.set()
    assert legitimate.result(timeout=60) is True
    assert [f.result(timeout=60) for f in flood] == [False] * 250
    # The check running when it came, then its own: no queue of the flood in between.
    assert verify.checked.index(PASSWORD) <= 2
    # The flood had at most MAX_WAITING_PER_CLIENT checks waiting; the rest cost no bcrypt.
    assert len(verify.checked) == 1 + MAX_WAITING_PER_CLIENT + 1


def test_clients_take_turns():
    verify = Recorded()
    checks = FairChecks(verify)
    held = checks.submit("a", b"a0", HASHED)
    assert verify.first_started.wait(30)
    futures = [checks.submit("a", f"a{n}".encode(), HASHED) for n in (1, 2, 3)]
    futures += [checks.submit("b", f"b{n}".encode(), HASHED) for n in (1, 2)]
    futures += [checks.submit("c", b"c1", HASHED)]
    verify.release.set()
    for future in [held, *futures]:
        future.result(timeout=60)
    assert verify.checked == [b"a0", b"a1", b"b1", b"c1", b"a2", b"b2", b"a3"]


def test_a_flooding_client_sharing_the_address_is_answered_without_waiting():
    """Beyond its waiting checks a client is refused at once: it never waits behind anyone."""
    verify = Recorded()
    checks = FairChecks(verify)
    checks.submit("10.0.0.1", b"guess", HASHED)
    assert verify.first_started.wait(30)
    waiting = [checks.submit("10.0.0.1", b"guess", HASHED) for _ in range(MAX_WAITING_PER_CLIENT)]
    beyond = checks.submit("10.0.0.1", PASSWORD, HASHED)
    assert beyond.done() and beyond.result() is False
    verify.release.set()
    assert [f.result(timeout=60) for f in waiting] == [False] * MAX_WAITING_PER_CLIENT


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("", ""),
    ],
)
def test_an_ipv6_host_is_one_client_whatever_address_of_its_64_it_uses(address, key):
    assert client_key(address) == key


def test_the_users_check_passes_a_legitimate_user_while_another_client_floods():
    """Through BasicAuthUsers: the right password from another address is verified, cached, and
    the flood's refused extras never reached bcrypt."""
    verify = Recorded()
    users = BasicAuthUsers({"prometheus": HASHED.decode()}, verify=verify)
    first = users.start_check("prometheus", "guess", "10.0.0.1")
    assert verify.first_started.wait(30)
    flood = [users.start_check("prometheus", f"guess{n}", "10.0.0.1") for n in range(100)]
    legitimate = users.start_check("prometheus", PASSWORD.decode(), "10.0.0.2")
    verify.release.set()
    assert legitimate.result(timeout=60) is True
    assert not first.result(timeout=60)
    assert not any(f.result(timeout=60) for f in flood)
    assert users.cached("prometheus", PASSWORD.decode())
    assert verify.checked.index(PASSWORD) <= 2
