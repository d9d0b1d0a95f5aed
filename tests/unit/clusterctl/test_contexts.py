"""clusterctl contexts: the order a cluster is chosen in, the file's writes, and bad files."""

from __future__ import annotations

import contextlib
import io
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from berth.errors import UserError
from clusterctl import contexts
from clusterctl.main import main


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def ctl(*args: str) -> Ran:
    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["clusterctl", *args]
    code: int | str | None = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.argv = argv
    return Ran(int(code or 0), out.getvalue(), err.getvalue())


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cfg" / "config"
    monkeypatch.setenv("BERTH_CONFIG", str(path))
    monkeypatch.delenv("BERTH_CONTEXT", raising=False)
    monkeypatch.delenv("BERTH_CONTROLLER", raising=False)
    return path


def _entry(name: str, server: str = "10.0.0.1:7070") -> contexts.ContextEntry:
    return contexts.ContextEntry(name=name, server=server, ca=f"/{name}/ca.crt",
                                 cert=f"/{name}/admin.crt", key=f"/{name}/admin.key")


def test_the_first_context_added_is_selected_and_later_ones_are_not(config: Path) -> None:
    assert contexts.add(_entry("a"))
    assert not contexts.add(_entry("b", "10.0.0.2:7070"))
    cfg = contexts.load()
    assert cfg.current_context == "a"
    assert [c.name for c in cfg.contexts] == ["a", "b"]
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert [p.name for p in config.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_order_is_flag_then_env_then_current(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    contexts.add(_entry("a"))
    contexts.add(_entry("b", "10.0.0.2:7070"))
    contexts.add(_entry("c", "10.0.0.3:7070"))
    assert contexts.resolve(None, None).address == "10.0.0.1:7070"
    monkeypatch.setenv("BERTH_CONTEXT", "b")
    assert contexts.resolve(None, None).address == "10.0.0.2:7070"
    target = contexts.resolve("c", None)
    assert (target.address, target.context) == ("10.0.0.3:7070", "c")
    assert target.tls is not None and target.tls.cert == "/c/admin.crt"
    # --controller with a context named replaces only the server.
    assert contexts.resolve("c", "10.9.9.9:1").address == "10.9.9.9:1"


def test_a_bare_controller_address_is_plaintext(config: Path) -> None:
    contexts.add(_entry("a"))
    target = contexts.resolve(None, "10.9.9.9:1")
    assert (target.address, target.tls, target.context) == ("10.9.9.9:1", None, None)


def test_no_context_is_one_clear_line(config: Path) -> None:
    ran = ctl("get", "nodes")
    assert ran.returncode == 1
    assert ran.stderr == ("Error: no cluster selected: run `clusterctl lab up` or "
                          "`clusterctl config use-context NAME`\n")
    ran = ctl("--context", "zz", "get", "nodes")
    assert ran.stderr.startswith("Error: context 'zz' not found in ")


def test_remove_clears_current_only_when_it_was_that_one(config: Path) -> None:
    contexts.add(_entry("a"))
    contexts.add(_entry("b"))
    contexts.remove("b")
    assert contexts.load().current_context == "a"
    contexts.remove("a")
    cfg = contexts.load()
    assert (cfg.current_context, cfg.contexts) == (None, [])
    contexts.remove("never-there")


def test_config_verbs(config: Path) -> None:
    contexts.add(_entry("a"))
    contexts.add(_entry("b", "10.0.0.2:7070"))
    assert ctl("config", "current-context").stdout == "a\n"
    assert ctl("config", "use-context", "b").returncode == 0
    assert ctl("config", "current-context").stdout == "b\n"
    listing = ctl("config", "get-contexts").stdout.splitlines()
    assert listing[0].split() == ["CURRENT", "NAME", "SERVER", "CERT"]
    assert listing[2].split() == ["*", "b", "10.0.0.2:7070", "/b/admin.crt"]
    ran = ctl("config", "use-context", "zz")
    assert ran.returncode == 1 and "no context 'zz'" in ran.stderr
    assert contexts.load().current_context == "b"


@pytest.mark.parametrize(("text", "message"), [
    ("current-context: [", "not YAML"),
    ("contexts: [{name: a}]", "contexts.0.server: Field required"),
    ("contexts: [{name: a, server: x, token: t}]", "contexts.0.token: Extra inputs"),
    ("bogus: 1", "bogus: Extra inputs"),
], ids=["yaml", "missing-server", "unknown-key", "unknown-top"])
def test_a_bad_file_is_one_line_naming_the_file(config: Path, text: str, message: str) -> None:
    config.parent.mkdir(parents=True)
    config.write_text(text)
    with pytest.raises(UserError) as info:
        contexts.load()
    assert str(info.value).startswith(f"{config}: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_half_a_certificate_is_refused(config: Path) -> None:
    entry = contexts.ContextEntry(name="a", server="x:1", ca="/ca", cert="/c")
    with pytest.raises(UserError, match="ca, cert and key go together"):
        entry.tls()
