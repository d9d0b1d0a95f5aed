"""The agent rotates a flooding container's log and ``clusterctl logs --tail`` reads its end.

One-host lab: a container writes as fast as it can for 20 s, then three marker lines.
The agent's own rotation task (agent.main) must have kept the log within Docker's
`local` defaults, with rotated files beside it, and the tail must be the markers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.runtime.logrotate import DEFAULT_LIMITS, disk_usage, log_files, rotated_name
from tests.e2e.conftest import Lab, wait_until

pytestmark = pytest.mark.e2e

FLOOD = """\
apiVersion: berth/v1
kind: Service
metadata: {name: flood}
spec:
  image: busybox:latest
  command: [sh, -c, "exec 2>/dev/null; timeout 20 yes %s; echo; echo end-1; echo end-2;
    echo end-3; exec sleep 3600"]
""" % ("x" * 500)
RFC3339 = re.compile(r"^\S+ ")


@pytest.fixture(scope="module")
def lab(lab_factory: Callable[[int], Lab]) -> Iterator[Lab]:
    yield lab_factory(1)


def test_flooding_container_log_is_rotated_and_tailed_from_the_end(
    lab: Lab, tmp_path: Path
) -> None:
    path = tmp_path / "flood.yaml"
    path.write_text(FLOOD)
    lab.ctl("apply", "-f", str(path), "--wait")
    cdir = Path(lab.info["hosts"][0]["state_dir"]) / "containers" / "flood-1"

    def tail(n: int) -> list[str]:
        out = lab.ctl("logs", "--tail", str(n), "flood-1").stdout.splitlines()
        return [RFC3339.sub("", line, count=1) for line in out]

    wait_until("the flood to end", lambda: tail(1) == ["end-3"], timeout=180)
    assert tail(3) == ["end-1", "end-2", "end-3"]
    limit = DEFAULT_LIMITS.max_size * DEFAULT_LIMITS.max_files
    wait_until("a settled log", lambda: disk_usage(cdir) <= limit, timeout=30)
    assert (cdir / rotated_name(1)).exists(), [p.name for p in log_files(cdir)]
    lab.ctl("delete", "-f", str(path))
