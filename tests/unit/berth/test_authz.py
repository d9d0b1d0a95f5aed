"""berth.authz: every served method has a rule, and the rules say what the issue asks."""

from __future__ import annotations

import pytest
from grpc_health.v1 import health_pb2

from berth import authz
from protos import agent_pb2, controller_pb2


def _methods() -> set[str]:
    found = set()
    for module in (agent_pb2, controller_pb2, health_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                found.add(f"/{service.full_name}/{method.name}")
    return found


def test_every_method_of_every_served_service_has_a_rule() -> None:
    assert _methods() == set(authz.ALLOWED)


@pytest.mark.parametrize(("method", "cn", "allowed"), [
    ("/berth.v1.Controller/Apply", "admin", True),
    ("/berth.v1.Controller/Apply", "node:h1", False),
    ("/berth.v1.Controller/Delete", "node:h1", False),
    ("/berth.v1.Controller/Exec", "node:h1", False),
    ("/berth.v1.Controller/Apply", "controller", False),
    ("/berth.v1.Controller/ImagePull", "node:h1", True),
    ("/berth.v1.Agent/Exec", "controller", True),
    ("/berth.v1.Agent/Exec", "admin", False),
    ("/berth.v1.Agent/Logs", "node:h2", False),
    ("/berth.v1.Agent/Inspect", "node:h1", False),
    ("/berth.v1.Controller/Get", "etcd:e1", False),
    ("/berth.v1.Controller/Get", "root", False),
    ("/berth.v1.Controller/Get", "node:../h1", False),
    ("/berth.v1.Controller/NotInTheTable", "admin", False),
    ("/grpc.health.v1.Health/Check", "node:h1", True),
], ids=lambda v: str(v))
def test_decide(method: str, cn: str, allowed: bool) -> None:
    assert (authz.decide(method, cn) is None) == allowed


def test_a_refusal_names_the_role_and_the_method() -> None:
    assert authz.decide("/berth.v1.Controller/Apply", "node:h2") == \
        "role node:h2 may not call Controller/Apply"
    assert authz.decide("/berth.v1.Agent/Exec", "admin") == "role admin may not call Agent/Exec"
