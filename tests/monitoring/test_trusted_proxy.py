"""The per-source sign-in throttle's address behind a reverse proxy (issue 12 point 3):
X-Forwarded-For is read only when the direct peer is a proxy named in DRESS_TRUSTED_PROXY, and
then its right-most address that is not a trusted proxy is the client; otherwise the peer."""

from __future__ import annotations

import pytest

from monitoring import auth

PROXY = "10.0.0.2"
EDGE = "10.0.0.3"
CLIENT = "192.0.2.44"
FORGED = "198.51.100.9"


def _trusted(text: str) -> tuple[auth.Network, ...]:
    return auth.trusted_proxies(text)


def test_without_a_trusted_proxy_the_header_is_never_read() -> None:
    assert auth.source_address(CLIENT, [f"{FORGED}"], ()) == CLIENT
    assert auth.source_address(PROXY, [f"{CLIENT}"], ()) == PROXY  # a proxy not named: every user is the proxy
    assert auth.source_address(None, [FORGED], ()) is None  # this machine, as Streamlit reports it


def test_a_peer_that_is_not_the_trusted_proxy_cannot_choose_its_address() -> None:
    trusted = _trusted(PROXY)
    assert auth.source_address(FORGED, [CLIENT], trusted) == FORGED  # a direct client forging the header
    assert auth.source_address(FORGED, [], trusted) == FORGED


def test_behind_the_trusted_proxy_the_right_most_untrusted_address_is_the_client() -> None:
    trusted = _trusted(f"{PROXY}, {EDGE}")
    assert auth.source_address(PROXY, [CLIENT], trusted) == CLIENT
    # The client sent its own X-Forwarded-For; the proxy appended the address it saw: the left part is not believed.
    assert auth.source_address(PROXY, [f"{FORGED}, {CLIENT}"], trusted) == CLIENT
    # Two proxies (edge, then ours), the header repeated: read from the right, trusted hops skipped.
    assert auth.source_address(PROXY, [f"{FORGED}, {CLIENT}", EDGE], trusted) == CLIENT
    assert auth.source_address(PROXY, [f"{FORGED},{CLIENT},{EDGE}"], trusted) == CLIENT
    # IPv6, and a network as the trusted entry.
    assert auth.source_address("fd00::5", ["2001:db8::7"], _trusted("fd00::/64")) == "2001:db8::7"
    assert auth.source_address("10.1.2.3", [CLIENT], _trusted("10.1.2.0/24")) == CLIENT


def test_a_proxy_on_this_machine_and_the_edge_cases_give_a_stricter_source_never_a_forged_one() -> None:
    assert auth.source_address(None, [CLIENT], _trusted("127.0.0.1")) == CLIENT  # Streamlit reports loopback as None
    trusted = _trusted(PROXY)
    assert auth.source_address(PROXY, [], trusted) == PROXY  # no header: the proxy
    assert auth.source_address(PROXY, [PROXY], trusted) == PROXY  # only trusted hops: the last of them
    assert auth.source_address(PROXY, [f"{CLIENT}, not-an-address"], trusted) == PROXY  # garbage where the proxy writes: the proxy


def test_the_setting_is_checked_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(auth.TRUSTED_PROXY_ENV, raising=False)
    assert auth.trusted_proxies() == ()
    monkeypatch.setenv(auth.TRUSTED_PROXY_ENV, f"{PROXY}, ,{EDGE}")
    assert [str(n) for n in auth.trusted_proxies()] == [f"{PROXY}/32", f"{EDGE}/32"]
    monkeypatch.setenv(auth.TRUSTED_PROXY_ENV, f"{PROXY},proxy.hospital.org")
    with pytest.raises(ValueError, match="DRESS_TRUSTED_PROXY: value 'proxy.hospital.org': not an IP address or network"):
        auth.trusted_proxies()


def test_forwarded_https_only_from_a_trusted_proxy_and_only_its_own_entry() -> None:
    trusted = _trusted(PROXY)
    assert auth.forwarded_https(PROXY, ["https"], trusted)
    assert auth.forwarded_https(PROXY, ["HTTPS "], trusted)
    assert not auth.forwarded_https(PROXY, ["http"], trusted)
    assert not auth.forwarded_https(PROXY, [], trusted)  # no header: plain HTTP
    assert auth.forwarded_https(PROXY, ["http, https"], trusted)  # the right-most entry is the proxy's own
    assert not auth.forwarded_https(PROXY, ["https, http"], trusted)  # a client's "https" before it is not believed
    assert not auth.forwarded_https(PROXY, ["https", "http"], trusted)  # nor in an earlier header
    assert not auth.forwarded_https(FORGED, ["https"], trusted)  # a peer that is not the proxy
    assert not auth.forwarded_https(PROXY, ["https"], ())  # no proxy trusted
    assert not auth.forwarded_https(None, ["https"], trusted)  # no peer known
    assert not auth.forwarded_https("not-an-address", ["https"], _trusted("0.0.0.0/0"))
    assert auth.forwarded_https("10.0.0.7", ["https"], _trusted("10.0.0.0/24"))  # a network of proxies
