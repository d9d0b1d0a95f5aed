"""etcd RBAC for berth: users are certificate CNs, each confined to what it must write.

Called by the lab and the deploy tooling right after etcd first starts (``bootstrap``), and
by ``clusterctl pki add-node``/``revoke`` (``add_node``/``remove_node``). The client passed
in must authenticate as ``admin`` (or ``root``): once auth is on, only a root-role user may
change users and roles.

Design notes:

- etcd started with ``--client-cert-auth`` takes the user name from the client
  certificate's CN, so users have no password (``UserAddOptions.no_password``, etcd 3.4+)
  and a certificate is the only way in. A client with no certificate is refused by TLS.
- Roles, one per user, named as the user:

      admin          etcd's built-in ``root`` role: everything, including this module's work
      controller     read and write under /berth/
      node:<name>    read /berth/assign/, /berth/endpoints/ and /berth/nodes/ (what
                     agents mirror; the nodes' addresses close berth's ports on them);
                     write only /berth/nodes/<name>, /berth/status/<name>/ and
                     /berth/endpoints/<name>/ (berth.keyspace.node_writable)

  so a node cannot write /berth/desired/ or /berth/assign/, nor another node's status or
  endpoints: Kubernetes' NodeRestriction, done by etcd itself.
- etcd refuses ``AuthEnable`` until a user named ``root`` holds the ``root`` role; nobody
  holds a certificate for CN ``root``, so that user cannot log in.
- Every function reads what exists and changes only the difference, and returns the changes
  it made: a second run returns []. Permissions of berth's roles that are not in the design
  are revoked, so an edited role comes back to the design.
- etcd 3.4 has no AuthStatus; ``Authenticate`` answers "authentication is not enabled" while
  auth is off, which is how ``auth_enabled`` asks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from berth import keyspace
from berth.etcd.client import Etcd3Client
from berth.etcd.errors import EtcdError, EtcdPermissionDenied
from berth.etcd.model import encode_key, prefix_range_end
from protos.etcd import auth_pb2, rpc_pb2

log = logging.getLogger(__name__)

ROOT = "root"
ADMIN = "admin"
CONTROLLER = "controller"
NODE_PREFIX = "node:"

Kind = Literal["read", "write", "readwrite"]
_TYPES: dict[Kind, auth_pb2.Permission.Type] = {
    "read": auth_pb2.Permission.READ,
    "write": auth_pb2.Permission.WRITE,
    "readwrite": auth_pb2.Permission.READWRITE,
}


@dataclass(frozen=True, order=True)
class Grant:
    """One key permission: a single key, or every key under a prefix."""

    key: str
    prefix: bool
    kind: Kind

    def range(self) -> tuple[bytes, bytes]:
        raw = encode_key(self.key)
        return raw, prefix_range_end(raw) if self.prefix else b""

    def to_pb(self) -> auth_pb2.Permission:
        key, end = self.range()
        return auth_pb2.Permission(permType=_TYPES[self.kind], key=key, range_end=end)


def node_user(name: str) -> str:
    """The etcd user (and role) of NAME's agent: its certificate's CN."""
    return NODE_PREFIX + keyspace.check_node_name(name)


def controller_grants() -> frozenset[Grant]:
    return frozenset({Grant(keyspace.ROOT, True, "readwrite")})


def node_grants(name: str) -> frozenset[Grant]:
    node_key, status_prefix, endpoints_prefix = keyspace.node_writable(name)
    return frozenset({
        Grant(keyspace.ASSIGN, True, "read"),
        Grant(keyspace.ENDPOINTS, True, "read"),
        Grant(keyspace.NODES, True, "read"),
        Grant(node_key, False, "readwrite"),
        Grant(status_prefix, True, "readwrite"),
        Grant(endpoints_prefix, True, "readwrite"),
    })


def _grant_of(perm: auth_pb2.Permission) -> Grant | None:
    """The Grant a stored permission is, if it is one berth would make."""
    kinds: dict[int, Kind] = {v: k for k, v in _TYPES.items()}
    kind = kinds[perm.permType]
    key = perm.key.decode("utf-8", errors="replace")
    if not perm.range_end:
        return Grant(key, False, kind)
    if perm.range_end == prefix_range_end(perm.key):
        return Grant(key, True, kind)
    return None


class _Auth:
    """etcd's Auth service on one client, each call named for its error message."""

    def __init__(self, etcd: Etcd3Client) -> None:
        self._etcd = etcd
        self.changes: list[str] = []

    async def users(self) -> set[str]:
        resp = await self._etcd.auth("UserList", rpc_pb2.AuthUserListRequest(), "list users")
        return set(resp.users)

    async def roles(self) -> set[str]:
        resp = await self._etcd.auth("RoleList", rpc_pb2.AuthRoleListRequest(), "list roles")
        return set(resp.roles)

    async def user_roles(self, user: str) -> set[str]:
        resp = await self._etcd.auth("UserGet", rpc_pb2.AuthUserGetRequest(name=user),
                                     f"get user {user}")
        return set(resp.roles)

    async def ensure_user(self, user: str, role: str) -> None:
        """USER exists, without a password, and holds exactly ROLE."""
        if user not in await self.users():
            options = auth_pb2.UserAddOptions(no_password=True)
            await self._etcd.auth("UserAdd", rpc_pb2.AuthUserAddRequest(
                name=user, options=options), f"add user {user}")
            self.changes.append(f"added user {user}")
        held = await self.user_roles(user)
        if role not in held:
            await self._etcd.auth("UserGrantRole", rpc_pb2.AuthUserGrantRoleRequest(
                user=user, role=role), f"grant role {role} to {user}")
            self.changes.append(f"granted role {role} to user {user}")
        for extra in sorted(held - {role}):
            await self._etcd.auth("UserRevokeRole", rpc_pb2.AuthUserRevokeRoleRequest(
                name=user, role=extra), f"revoke role {extra} from {user}")
            self.changes.append(f"revoked role {extra} from user {user}")

    async def ensure_role(self, role: str, grants: frozenset[Grant]) -> None:
        """ROLE exists with exactly GRANTS."""
        if role not in await self.roles():
            await self._etcd.auth("RoleAdd", rpc_pb2.AuthRoleAddRequest(name=role),
                                  f"add role {role}")
            self.changes.append(f"added role {role}")
        resp = await self._etcd.auth("RoleGet", rpc_pb2.AuthRoleGetRequest(role=role),
                                     f"get role {role}")
        have = {(p.permType, p.key, p.range_end): _grant_of(p) for p in resp.perm}
        for (_, key, end), grant in sorted(have.items(), key=lambda kv: kv[0]):
            if grant in grants:
                continue
            await self._etcd.auth("RoleRevokePermission", rpc_pb2.AuthRoleRevokePermissionRequest(
                role=role, key=key, range_end=end), f"revoke a permission of role {role}")
            self.changes.append(f"revoked {key.decode(errors='replace')} from role {role}")
        for grant in sorted(grants - set(have.values())):
            await self._etcd.auth("RoleGrantPermission", rpc_pb2.AuthRoleGrantPermissionRequest(
                name=role, perm=grant.to_pb()), f"grant {grant.key} to role {role}")
            self.changes.append(f"granted {grant.kind} {grant.key}"
                                f"{'*' if grant.prefix else ''} to role {role}")

    async def remove(self, name: str) -> None:
        """Delete user NAME and role NAME, whichever exist."""
        if name in await self.users():
            await self._etcd.auth("UserDelete", rpc_pb2.AuthUserDeleteRequest(name=name),
                                  f"delete user {name}")
            self.changes.append(f"deleted user {name}")
        if name in await self.roles():
            await self._etcd.auth("RoleDelete", rpc_pb2.AuthRoleDeleteRequest(role=name),
                                  f"delete role {name}")
            self.changes.append(f"deleted role {name}")


async def auth_enabled(etcd: Etcd3Client) -> bool:
    """Whether etcd's auth is on (etcd 3.4 has no AuthStatus; see the module notes)."""
    try:
        await etcd.auth("Authenticate", rpc_pb2.AuthenticateRequest(
            name="berth-probe", password="x"), "probe auth")
    except EtcdPermissionDenied:
        return True         # "authentication failed": auth is on and judged the probe
    except EtcdError as exc:
        if "authentication is not enabled" in str(exc):
            return False
        raise
    return True


async def bootstrap(etcd: Etcd3Client) -> list[str]:
    """Users root, admin and controller with their roles, then auth on; the changes made.

    Run once after etcd first starts (idempotent: a second run returns []). Node users are
    added by ``add_node``, before or after.
    """
    auth = _Auth(etcd)
    await auth.ensure_user(ROOT, ROOT)
    await auth.ensure_user(ADMIN, ROOT)
    await auth.ensure_role(CONTROLLER, controller_grants())
    await auth.ensure_user(CONTROLLER, CONTROLLER)
    if not await auth_enabled(etcd):
        await etcd.auth("AuthEnable", rpc_pb2.AuthEnableRequest(), "enable auth")
        auth.changes.append("enabled auth")
    for change in auth.changes:
        log.info("etcd rbac: %s", change)
    return auth.changes


async def add_node(etcd: Etcd3Client, name: str) -> list[str]:
    """User and role ``node:NAME``, confined to NAME's own keys; the changes made."""
    user = node_user(name)
    auth = _Auth(etcd)
    await auth.ensure_role(user, node_grants(name))
    await auth.ensure_user(user, user)
    for change in auth.changes:
        log.info("etcd rbac: %s", change)
    return auth.changes


async def remove_node(etcd: Etcd3Client, name: str) -> list[str]:
    """Delete user and role ``node:NAME`` (a revoked node); the changes made."""
    auth = _Auth(etcd)
    await auth.remove(node_user(name))
    for change in auth.changes:
        log.info("etcd rbac: %s", change)
    return auth.changes
