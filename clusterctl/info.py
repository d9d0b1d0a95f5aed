"""``clusterctl info``: rendering of the controller's Info answer, as text or JSON.

clusterctl.main calls ``as_dict`` (the stable JSON shape, documented in docs/config.md)
and ``text``. The text is for people: versions, etcd members with their health, one block
per node (its runtime, cgroup version, kernel, labels and the drivers it can or cannot
offer, with why), and certificate expiry dates, or a plain "TLS off".
"""

from __future__ import annotations

from typing import Any

from protos import controller_pb2


def as_dict(resp: controller_pb2.InfoResponse) -> dict[str, Any]:
    return {
        "version": resp.version,
        "etcd": {
            "error": resp.etcd_error,
            "members": [{
                "name": m.name, "id": m.id, "client_urls": list(m.client_urls),
                "peer_urls": list(m.peer_urls), "learner": m.learner, "healthy": m.healthy,
                "error": m.error, "leader": m.leader, "version": m.version,
                "db_size": m.db_size,
            } for m in resp.etcd_members],
        },
        "nodes": [{
            "name": n.name, "status": n.status, "version": n.version, "kernel": n.kernel,
            "cgroup": n.cgroup, "runtime": n.runtime, "labels": dict(sorted(n.labels.items())),
            "drivers": {d.name: {"available": not d.reason, "reason": d.reason}
                        for d in n.drivers},
        } for n in resp.nodes],
        "tls": resp.tls,
        "certificates": [{"role": c.role, "subject": c.subject, "not_after": c.not_after,
                          "error": c.error} for c in resp.certificates],
    }


def _member(m: controller_pb2.EtcdMember) -> str:
    health = "healthy" if m.healthy else f"unhealthy: {m.error or 'no answer'}"
    role = ", leader" if m.leader else ""
    role += ", learner" if m.learner else ""
    version = f" etcd {m.version}" if m.version else ""
    urls = ",".join(m.client_urls) or "-"
    return f"  {m.name or '(unstarted)'} ({m.id}) {urls}: {health}{role}{version}"


def _node(n: controller_pb2.NodeInfo) -> list[str]:
    lines = [f"  {n.name}: {n.status}"]
    if n.status != "Ready":
        return lines
    labels = ",".join(f"{k}={v}" for k, v in sorted(n.labels.items())) or "-"
    lines += [
        f"    berth:    {n.version or '-'}",
        f"    runtime:  {n.runtime or '-'}",
        f"    cgroup:   {n.cgroup or '-'}",
        f"    kernel:   {n.kernel or '-'}",
        f"    labels:   {labels}",
    ]
    offered = [d.name for d in n.drivers if not d.reason]
    lines.append(f"    drivers:  {', '.join(offered) or '-'}")
    lines += [f"    not:      {d.name}: {d.reason}" for d in n.drivers if d.reason]
    return lines


def text(resp: controller_pb2.InfoResponse) -> str:
    lines = [f"Version: {resp.version}", "etcd members:"]
    if resp.etcd_error:
        lines.append(f"  cannot list members: {resp.etcd_error}")
    lines += [_member(m) for m in resp.etcd_members]
    lines.append("Nodes:")
    for node in resp.nodes:
        lines += _node(node)
    if not resp.nodes:
        lines.append("  (none)")
    lines.append("Certificates:")
    if not resp.tls:
        lines.append("  TLS off: the controller serves plaintext (no --tlsverify)")
    for cert in resp.certificates:
        if cert.error:
            lines.append(f"  {cert.role}: {cert.error}")
        else:
            lines.append(f"  {cert.role} ({cert.subject}): expires {cert.not_after}")
    return "\n".join(lines)
