"""What this host can do, probed once when the agent starts: ``NodeRecord.facts``.

agent.main calls ``probe`` and announces the result with the node; the controller shows
it in ``clusterctl info``. Each driver is probed by asking the kernel for the link kinds
it needs, in a network namespace of its own made by ``unshare --net`` that vanishes with
the probe: nothing on the host changes, and a module the kernel lacks ("Unknown device
type") reads as "no kernel support" instead of a failure at the first container.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from importlib import metadata

from berth.records import DriverSupport, HostFacts

PROBE_TIMEOUT = 10.0
# One line per link kind: "<kind> ok" or "<kind> <the error>". bp0 is the parent of the
# macvlan and the VLAN sub-interface.
_SCRIPT = """
try() { kind=$1; shift; if out=$(ip link add "$@" 2>&1); then echo "$kind ok";
        else echo "$kind $(echo "$out" | head -n1)"; fi; }
try veth bp0 type veth peer name bp1
try bridge bb0 type bridge
try vxlan bx0 type vxlan id 42 dstport 4789 nolearning
try macvlan bm0 link bp0 type macvlan mode bridge
try vlan bp0.10 link bp0 type vlan id 10
"""
# Each driver (or mode) and the link kinds it needs.
NEEDS: dict[str, tuple[str, ...]] = {
    "bridge": ("bridge", "veth"),
    "overlay": ("vxlan", "bridge", "veth"),
    "macvlan": ("macvlan",),
    "macvlan 802.1q": ("vlan",),
}
_NO_SUPPORT = ("Unknown device type", "not supported", "Not supported")


def kernel_reasons(output: str) -> dict[str, str]:
    """The probe script's lines to ``{kind: ""}`` when the kernel made it, else why not."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        kind, _, rest = line.strip().partition(" ")
        if not kind:
            continue
        if rest == "ok":
            found[kind] = ""
        elif any(words in rest for words in _NO_SUPPORT):
            found[kind] = "no kernel support"
        else:
            found[kind] = rest or "failed"
    return found


def drivers(kinds: dict[str, str]) -> tuple[DriverSupport, ...]:
    out = [DriverSupport(name=name) for name in ("host", "none", "container")]
    for name, needed in NEEDS.items():
        missing = [f"{kind}: {kinds.get(kind, 'not probed')}" for kind in needed
                   if kinds.get(kind, "not probed")]
        reason = ""
        if missing:
            first = missing[0]
            reason = first.split(": ", 1)[1] if len(needed) == 1 else first
        out.append(DriverSupport(name=name, reason=reason))
    return tuple(out)


async def _run(*argv: str) -> tuple[int, str]:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
    except OSError as exc:
        return -1, exc.strerror or str(exc)
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            out, _ = await proc.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return -1, "timed out"
    return proc.returncode or 0, out.decode(errors="replace")


async def probe_drivers() -> tuple[DriverSupport, ...]:
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if unshare is None or ip is None:
        why = "cannot probe: " + ("unshare" if unshare is None else "ip") + " not found"
        return tuple(DriverSupport(name=name, reason=why) for name in NEEDS)
    _, out = await _run(unshare, "--net", "sh", "-c", _SCRIPT)
    return drivers(kernel_reasons(out))


def cgroup_version(mountinfo: str) -> str:
    """``v2`` when /sys/fs/cgroup is the unified hierarchy, ``v1`` otherwise."""
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] == "/sys/fs/cgroup" and "-" in fields:
            return "v2" if fields[fields.index("-") + 1] == "cgroup2" else "v1"
    return "unknown"


def _berth_version() -> str:
    try:
        return metadata.version("berth")
    except metadata.PackageNotFoundError:
        return "unknown"


def _cgroup() -> str:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            return cgroup_version(f.read())
    except OSError:
        return "unknown"


async def probe(runtime_bin: str) -> HostFacts:
    cgroup = _cgroup()
    code, out = await _run(runtime_bin, "--version")
    first = out.splitlines()[0].strip() if code == 0 and out.strip() else "version unknown"
    return HostFacts(version=_berth_version(), kernel=os.uname().release, cgroup=cgroup,
                     runtime=f"{runtime_bin} ({first})", drivers=await probe_drivers())
