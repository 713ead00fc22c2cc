"""`make up` on ports of the user's choosing, and never on a port another process holds."""

from __future__ import annotations

import pytest

from pos_devstack.platform import Ports


def test_ports_come_from_the_environment() -> None:
    ports = Ports.from_env(
        {
            "OMNITILL_POSTGRES_PORT": "15432",
            "OMNITILL_NATS_PORT": "14222",
            "OMNITILL_GATEWAY_PORT": "18080",
            "OMNITILL_SERVICE_PORT_BASE": "16000",
        }
    )
    assert (ports.postgres, ports.nats, ports.gateway) == (15432, 14222, 18080)
    assert list(ports.services.values()) == [16000, 16001, 16002, 16003, 16004, 16005]
    assert ports.services["dispatcher"] == 16005 and ports.deliverer == 16006
    assert Ports.from_env({}) == Ports()  # unset: the documented defaults
    with pytest.raises(ValueError, match="OMNITILL_GATEWAY_PORT='http'"):
        Ports.from_env({"OMNITILL_GATEWAY_PORT": "http"})
    with pytest.raises(ValueError, match="OMNITILL_SERVICE_PORT_BASE"):
        Ports.from_env({"OMNITILL_SERVICE_PORT_BASE": "65533"})
    with pytest.raises(ValueError, match="OMNITILL_GATEWAY_PORT: port 50061"):
        Ports.from_env({"OMNITILL_GATEWAY_PORT": "50061"})
