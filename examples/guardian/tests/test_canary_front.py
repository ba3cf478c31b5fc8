"""The canaries' front address (GUARDIAN_CANARY_FRONT): L5-L7 go through it, L3/L4 do not."""

from __future__ import annotations

import pytest

from guardian.healing.canary import FRONT_ENV, CanaryTarget


def test_front_address_routes_the_client_probes_and_keeps_the_listener(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the variable set, client address and URL are the front's; the API host and port stay."""
    target = CanaryTarget("127.0.0.1", 8080)
    monkeypatch.delenv(FRONT_ENV, raising=False)
    assert CanaryTarget.with_front_from_env(target) == target
    monkeypatch.setenv(FRONT_ENV, "127.0.0.1:9000")
    fronted = CanaryTarget.with_front_from_env(target)
    assert fronted.client_address == ("127.0.0.1", 9000)
    assert fronted.api_url == "http://127.0.0.1:9000"
    assert (fronted.api_host, fronted.api_port) == ("127.0.0.1", 8080)


def test_malformed_front_address_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A value that is not host:port raises, naming the variable and the value."""
    monkeypatch.setenv(FRONT_ENV, "nowhere")
    with pytest.raises(ValueError, match="GUARDIAN_CANARY_FRONT='nowhere' is not host:port"):
        CanaryTarget.with_front_from_env(CanaryTarget("127.0.0.1", 8080))
