"""OCI config generation from a spec and an image (agent.runtime.bundle), pure logic."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.runtime.bundle import (
    DEFAULT_CAPS,
    build_config,
    merge_env,
    resolve_args,
    resolve_user,
    write_container_files,
)
from agent.runtime.errors import SpecError
from agent.runtime.images import Image
from agent.runtime.seccomp import BLOCKED_SYSCALLS, default_profile
from berth.records import ContainerSpec


def image(entrypoint: tuple[str, ...] | None = None, cmd: tuple[str, ...] | None = ("sh",),
          user: str = "", workdir: str = "") -> Image:
    return Image(ref="docker.io/library/x:latest", id="sha256:" + "0" * 64, layers=(),
                 entrypoint=entrypoint, cmd=cmd, env=("PATH=/bin", "A=image"),
                 workdir=workdir, user=user)


def spec(**kw: object) -> ContainerSpec:
    return ContainerSpec(name="web-1", service="web", node="n1", image="x", **kw)


@pytest.mark.parametrize(
    ("img_ep", "img_cmd", "spec_ep", "spec_cmd", "expected"),
    [
        (None, ("sh",), None, None, ["sh"]),
        (None, ("sh",), None, ("echo", "hi"), ["echo", "hi"]),
        (("/entry",), ("arg",), None, None, ["/entry", "arg"]),
        (("/entry",), ("arg",), None, ("other",), ["/entry", "other"]),
        (("/entry",), ("arg",), ("/mine",), None, ["/mine"]),
        (("/entry",), ("arg",), ("/mine",), ("x",), ["/mine", "x"]),
        (("/entry",), ("arg",), (), None, ["arg"]),
    ],
    ids=["image-cmd", "spec-cmd", "image-ep+cmd", "spec-cmd-keeps-ep", "spec-ep-drops-cmd",
         "spec-ep+cmd", "empty-ep-clears"],
)
def test_args_resolve_like_docker(img_ep: tuple[str, ...] | None, img_cmd: tuple[str, ...] | None,
                                  spec_ep: tuple[str, ...] | None,
                                  spec_cmd: tuple[str, ...] | None, expected: list[str]) -> None:
    assert resolve_args(spec(entrypoint=spec_ep, command=spec_cmd),
                        image(img_ep, img_cmd)) == expected


def test_nothing_to_run_is_a_user_error() -> None:
    with pytest.raises(SpecError, match="no command"):
        resolve_args(spec(), image(cmd=None))


def test_env_merge_spec_wins_and_path_defaults() -> None:
    assert merge_env(["A=image", "B=1"], {"A": "spec"}, "h") == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOSTNAME=h", "A=spec", "B=1",
    ]
    assert merge_env(["PATH=/bin"], {}, "h")[0] == "PATH=/bin"


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/:/bin/sh\n"
    )
    (tmp_path / "etc" / "group").write_text("root:x:0:\nstaff:x:50:\n")
    return tmp_path


@pytest.mark.parametrize(
    ("user", "expected"),
    [("", (0, 0)), ("1000", (1000, 1001)), ("4242", (4242, 0)), ("app", (1000, 1001)),
     ("app:staff", (1000, 50)), ("app:7", (1000, 7)), ("5:6", (5, 6))],
    ids=["default-root", "uid-in-passwd", "uid-unknown", "name", "name-group", "name-gid",
         "uid-gid"],
)
def test_user_resolution(rootfs: Path, user: str, expected: tuple[int, int]) -> None:
    assert resolve_user(user, rootfs) == expected


def test_unknown_user_name_is_refused(rootfs: Path) -> None:
    with pytest.raises(SpecError, match="unable to find user ghost"):
        resolve_user("ghost", rootfs)


def test_config_has_docker_defaults(rootfs: Path, tmp_path: Path) -> None:
    files = write_container_files(tmp_path, "web-1")
    cfg = build_config(spec(workdir="/srv"), image(), rootfs, files, "berth/n1")
    caps = cfg["process"]["capabilities"]
    assert len(DEFAULT_CAPS) == 14
    assert caps["bounding"] == caps["effective"] == caps["permitted"] == list(DEFAULT_CAPS)
    assert "ambient" not in caps and "inheritable" not in caps
    assert cfg["hostname"] == "web-1" and cfg["process"]["cwd"] == "/srv"
    assert (rootfs / "srv").is_dir()  # Docker creates a missing WORKDIR
    assert cfg["linux"]["cgroupsPath"] == "/berth/n1/web-1"
    assert {ns["type"] for ns in cfg["linux"]["namespaces"]} == {
        "pid", "mount", "uts", "ipc", "network"}
    assert all("path" not in ns for ns in cfg["linux"]["namespaces"])
    assert "/proc/kcore" in cfg["linux"]["maskedPaths"]
    assert "/proc/sys" in cfg["linux"]["readonlyPaths"]
    assert cfg["linux"]["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    binds = {m["destination"]: m["source"] for m in cfg["mounts"] if m["type"] == "bind"}
    assert binds == {"/etc/hosts": str(files.hosts), "/etc/hostname": str(files.hostname),
                     "/etc/resolv.conf": str(files.resolv_conf)}
    assert cfg["process"]["terminal"] is False


def test_seccomp_profile_blocks_dockers_list() -> None:
    profile = default_profile("x86_64")
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    assert profile["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert default_profile("aarch64")["architectures"][0] == "SCMP_ARCH_AARCH64"
    (rule,) = profile["syscalls"]
    assert rule["action"] == "SCMP_ACT_ERRNO" and rule["errnoRet"] == 1
    for name in ("mount", "ptrace", "bpf", "unshare", "setns", "kexec_load", "userfaultfd"):
        assert name in rule["names"]
    assert len(set(BLOCKED_SYSCALLS)) == len(BLOCKED_SYSCALLS)
