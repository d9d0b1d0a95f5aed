"""The control machine's side of the deployment tests: inventory, ansible-playbook,
clusterctl, all run inside the machines' namespace (tests/deploy/machines.py).

The playbook builds berth's wheel and fills a wheelhouse on the control machine; inside
the namespace there is no package index, so ``prefetch_wheelhouse`` fills it first from
outside (as an operator whose control machine has no index would), and the role then
finds every wheel there (``pip download --no-index --find-links``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tests.vm.lan import SshMachine

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CONTROLLER_PORT = 7070
_RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                    re.MULTILINE)


@dataclass(frozen=True)
class Recap:
    """One ansible-playbook run: exit status, per-host changed/failed counts, the output."""

    returncode: int
    changed: dict[str, int]
    failed: dict[str, int]
    output: str

    def describe(self) -> str:
        return f"exit {self.returncode}, changed {self.changed}, failed {self.failed}"


def prefetch_wheelhouse(wheelhouse: Path) -> None:
    """What the berth role fetches, fetched here (outside the namespace, with an index):
    berth's requirements pinned to this venv's versions, for the machines' Python 3.11."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    with (REPO / "pyproject.toml").open("rb") as f:
        requirements = tomllib.load(f)["project"]["dependencies"]
    freeze = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
                            capture_output=True, text=True, check=True).stdout
    (wheelhouse.parent / "prefetch-constraints.txt").write_text(freeze)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                    "--only-binary=:all:", "--python-version", "3.11", "-d", str(wheelhouse),
                    "-c", str(wheelhouse.parent / "prefetch-constraints.txt"), *requirements],
                   check=True, capture_output=True, text=True, timeout=600)


class Fleet(Protocol):
    """What a deployment needs of its machines: tests/deploy/machines.py's ``MachineSet``
    (nspawn) and tests/vm/machine.py's ``VmCluster`` (qemu) both offer it."""

    @property
    def kind(self) -> str: ...

    @property
    def machines(self) -> Sequence[SshMachine]: ...

    @property
    def key(self) -> Path: ...

    def enter(self, *argv: str) -> list[str]:
        """argv run inside the machines' namespace (where br0's control address is)."""
        ...


@dataclass
class Deployment:
    machines: Fleet
    control: Path                          # the control machine's berth_local_dir
    extra_vars: dict[str, str] = field(default_factory=dict)
    patience: float = 1.0                  # waits are this many times longer (TCG: slow)

    @property
    def nodes(self) -> Sequence[SshMachine]:
        return self.machines.machines

    @property
    def controller(self) -> str:
        return f"{self.nodes[0].ip}:{CONTROLLER_PORT}"

    @property
    def pki(self) -> Path:
        return self.control / "pki"

    def write_inventory(self) -> Path:
        """All machines in [berth]; the controller on the first (also in [berth_controller])."""
        lines = ["[berth]"]
        lines += [f"{m.name} ansible_host={m.ip}" for m in self.nodes]
        lines += ["", "[berth_controller]", self.nodes[0].name]
        lines += ["", "[berth:vars]", "ansible_user=root",
                  f"ansible_ssh_private_key_file={self.machines.key}",
                  "ansible_ssh_common_args='-o StrictHostKeyChecking=no "
                  "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR'",
                  "berth_underlay_dev=eth0", ""]
        path = self.control / "inventory.ini"
        path.write_text("\n".join(lines))
        return path

    def playbook(self, **extra: str) -> Recap:
        """ansible-playbook site.yml against the machines, from inside their namespace."""
        variables = {"berth_local_dir": str(self.control),
                     # The machines have no way out: unknown names must fail fast.
                     "agent_dns_upstreams": "none", **self.extra_vars, **extra}
        vars_file = self.control / "extra-vars.json"
        vars_file.write_text(json.dumps(variables))
        env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg"),
               "ANSIBLE_NOCOLOR": "1", "ANSIBLE_HOST_KEY_CHECKING": "False",
               "ANSIBLE_LOCAL_TEMP": str(self.control / "ansible-tmp"),
               # SSH's connection sharing names its sockets by address, user and port,
               # which other namespaces reuse (every set of test machines has a node1 at
               # <subnet>.11): a shared directory would send one run's tasks down another
               # run's connection, to another machine. One directory per deployment.
               "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.control / "ssh-cp"),
               # Written as the playbook goes: where a slow or hung run is.
               "ANSIBLE_LOG_PATH": str(self.control / "ansible.log"),
               "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
        argv = self.machines.enter(
            str(BIN / "ansible-playbook"), "-i", str(self.write_inventory()),
            "-e", f"@{vars_file}", str(REPO / "ansible" / "site.yml"))
        done = subprocess.run(argv, capture_output=True, text=True, env=env,
                              timeout=1800 * self.patience, check=False, cwd=REPO / "ansible")
        output = done.stdout + done.stderr
        recap = output[output.rfind("PLAY RECAP"):] if "PLAY RECAP" in output else output[-2000:]
        print(recap.rstrip())          # shown with pytest -s (scripts/vm-test.sh)
        changed = {m[0]: int(m[2]) for m in _RECAP.findall(output)}
        failed = {m[0]: int(m[4]) + int(m[3]) for m in _RECAP.findall(output)}
        return Recap(done.returncode, changed, failed, output)

    def ctl(self, *args: str, check: bool = True, timeout: float = 300,
            admin: bool = True) -> subprocess.CompletedProcess[str]:
        """clusterctl from inside the namespace: with the admin certificate, through the
        context the pki role wrote; ``admin=False``: plaintext, no certificate."""
        argv = self.machines.enter(str(BIN / "clusterctl"), *args)
        env = {k: v for k, v in os.environ.items()
               if k not in ("BERTH_CONTEXT", "BERTH_CONTROLLER")}
        if admin:
            env["BERTH_CONFIG"] = str(self.control / "clusterctl.yaml")
        else:
            env["BERTH_CONFIG"] = str(self.control / "no-contexts.yaml")
            env["BERTH_CONTROLLER"] = self.controller
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout,
                              check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"clusterctl {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stdout}\n{done.stderr}")
        return done

    def containers(self) -> dict[str, dict[str, object]]:
        rows = json.loads(self.ctl("get", "containers", "-o", "json").stdout)
        return {str(r["name"]): r for r in rows}

    def container_pids(self, machine: SshMachine) -> dict[str, int]:
        """Container id -> init PID, as runc on ``machine`` reports them."""
        out = machine.check("runc --root /run/berth/runc list -f json")
        return {c["id"]: int(c["pid"]) for c in json.loads(out or "[]") or []
                if c["status"] == "running"}

    def monitor_pids(self, machine: SshMachine) -> list[int]:
        """The PIDs of the conmon processes on ``machine`` (one per container)."""
        out = machine.run("pgrep -x conmon").stdout
        return sorted(int(p) for p in out.split())

    def etcdctl(self, machine: SshMachine, *args: str) -> str:
        endpoints = ",".join(f"https://{m.ip}:2379" for m in self.nodes)
        pki = "/etc/berth/pki"
        # etcdctl's 5 s command timeout is short for a TLS handshake on a loaded TCG VM.
        wait = f"{10 * self.patience:.0f}s"
        return machine.check(
            f"ETCDCTL_API=3 etcdctl --dial-timeout={wait} --command-timeout={wait} "
            f"--endpoints={endpoints} --cacert={pki}/ca.crt "
            f"--cert={pki}/etcd-{machine.name}.crt --key={pki}/etcd-{machine.name}.key "
            + " ".join(args) + " 2>&1")
