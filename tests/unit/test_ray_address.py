"""[scoring] ray_address is checked before ray.init, which retries an address nothing listens on for minutes."""

from __future__ import annotations

import socket

import pytest

from loop.config import ScoringConfig
from loop.rounds.ray_driver import RayEngineError, check_reachable, ray_session


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_address_nothing_listens_on_is_refused_naming_the_key() -> None:
    address = f"127.0.0.1:{_closed_port()}"
    session = ray_session(ScoringConfig(engine="ray", ray_address=address))
    with pytest.raises(RayEngineError, match=r"\[scoring\] ray_address = .*no Ray answers there"):
        session.__enter__()


@pytest.mark.parametrize("address", ["cluster-without-port", "ray://host:port"])
def test_a_malformed_address_names_the_forms_it_takes(address: str) -> None:
    with pytest.raises(RayEngineError, match='expected "auto", "host:port"'):
        check_reachable(address)


def test_a_listening_address_passes() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        check_reachable(f"ray://127.0.0.1:{s.getsockname()[1]}")
        check_reachable("auto")
