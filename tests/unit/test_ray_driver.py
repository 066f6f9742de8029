"""[scoring] ray_address is checked before ray.init, which retries an address nothing listens on for minutes."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from loop.scoring.ray_driver import RayEngineError, check_reachable


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_address_nothing_listens_on_is_refused_naming_the_key() -> None:
    """ray_session runs this check before ray.init (unless this process has joined a Ray already, which it
    then uses: the suite's Ray fixture does, so the check is called directly here)."""
    with pytest.raises(RayEngineError, match=r"\[scoring\] ray_address = .*no Ray answers there"):
        check_reachable(f"127.0.0.1:{_closed_port()}")
    with pytest.raises(RayEngineError, match="no Ray answers there"):
        check_reachable(f"ray://127.0.0.1:{_closed_port()}")


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


def test_joining_an_address_nothing_listens_on_fails_before_ray_init() -> None:
    """In a process that has not joined a Ray, ray_session refuses the address without calling ray.init."""
    code = (
        "import sys\n"
        "from loop.config import ScoringConfig\n"
        "from loop.scoring.ray_driver import RayEngineError, ray_session\n"
        "try:\n"
        f"    with ray_session(ScoringConfig(engine='ray', ray_address='127.0.0.1:{_closed_port()}')):\n"
        "        sys.exit('joined a cluster that does not exist')\n"
        "except RayEngineError as e:\n"
        "    import ray\n"
        "    print(e, ray.is_initialized())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "no Ray answers there" in out.stdout and out.stdout.strip().endswith("False")
