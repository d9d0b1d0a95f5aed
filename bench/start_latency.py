"""Start latency of a short container: berth's Runtime against bare ``runc run``.

Measures, in one run, the median wall time of create -> start -> exited -> delete
of ``/bin/true`` in the busybox image through agent.runtime.Runtime (overlay
mount, bundle, conmon, runc create/start, exit file, runc delete, cleanup), and
of ``runc run`` on an equivalent, pre-mounted bundle. Target: ratio <= 2.0.

    sudo .venv/bin/python bench/start_latency.py [-n 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from agent.runtime import cgroups, rootfs
from agent.runtime.bundle import build_config, write_bundle, write_container_files
from agent.runtime.containers import Runtime
from berth.busybox import build_busybox_image
from berth.records import ContainerSpec


def true_spec(name: str) -> ContainerSpec:
    return ContainerSpec(name=name, service="bench", node="bench", image="busybox",
                         command=("/bin/true",))


async def one_runtime_run(rt: Runtime, name: str) -> float:
    t0 = time.perf_counter()
    await rt.create(true_spec(name))
    await rt.start(name)
    exited = await rt.wait(name, 30)
    await rt.delete(name)
    if exited.exit_code != 0:
        raise SystemExit(f"{name} exited {exited.exit_code}: {exited.error}")
    return time.perf_counter() - t0


def one_bare_run(work: Path, bundle: Path, name: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(["runc", "--root", str(work / "bare-root"), "run", "-b", str(bundle), name],
                   check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


async def measure(rt: Runtime, work: Path, n: int) -> tuple[list[float], list[float]]:
    """Alternate the two sides so load from other processes hits both alike."""
    bundle = work / "bare"
    bundle.mkdir()
    image = rt.images.resolve("busybox")
    root = rootfs.mount_rootfs(bundle, image.layers)
    try:
        files = write_container_files(bundle, "bare")
        write_bundle(bundle, build_config(true_spec("bare"), image, root, files, rt.cgroup_parent))
        ours: list[float] = []
        bare: list[float] = []
        for i in range(n + 1):
            t_ours = await one_runtime_run(rt, f"rt-{i}")
            t_bare = one_bare_run(work, bundle, f"bare-{i}")
            if i:  # the first round warms caches for both sides
                ours.append(t_ours)
                bare.append(t_bare)
        return ours, bare
    finally:
        rootfs.remove_rootfs(bundle)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="runs per side (default 20)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="berth-bench-") as tmp:
        work = Path(tmp)
        rt = Runtime(work / "state", work / "runc", f"berth-bench-{uuid.uuid4().hex[:8]}")
        rt.images.load(build_busybox_image(work / "busybox.tar"))
        try:
            ours, bare = await measure(rt, work, args.n)
        finally:
            for c in await rt.list():
                await rt.delete(c.name)
            cgroups.remove_cgroup(rt.cgroup_parent)
    m_ours, m_bare = statistics.median(ours), statistics.median(bare)
    print(f"runs per side:            {args.n}")
    print(f"berth Runtime median:     {m_ours * 1000:7.1f} ms  (create+start+exit+delete)")
    print(f"bare runc run median:     {m_bare * 1000:7.1f} ms")
    print(f"ratio:                    {m_ours / m_bare:7.2f}x  (target <= 2.0x)")


if __name__ == "__main__":
    asyncio.run(main())
