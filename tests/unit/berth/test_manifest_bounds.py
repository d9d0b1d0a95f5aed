"""Hostile manifests: size, YAML depth and aliases, replicas, name length, unusable subnets.

Regression tests for the review's findings 5 (replicas: 1000000000, billion laughs,
10,000 levels of nesting) and 6 (0.0.0.0/0, a 63-character service name).
"""

from __future__ import annotations

import pytest

from berth import yamlsafe
from berth.errors import ManifestError
from berth.limits import DEFAULT_LIMITS, Limits
from berth.manifest import MAX_MANIFEST_BYTES, ServiceDocument, check_size, load_manifest
from tests.manifests import NETWORK, SERVICE


def billion_laughs(field: str = "command") -> str:
    """The classic: 9 levels of 9 aliases each, 10^9 strings once expanded, under 1 KiB."""
    levels = ["  x0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for n in range(1, 9):
        levels.append(f"  x{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 9) + "]")
    return ("apiVersion: berth/v1\nkind: Service\nmetadata: {name: lol}\nspec:\n"
            "  image: busybox\n" + "\n".join(levels).replace("  x", "  x-") +
            f"\n  {field}: *l8\n")


def error_of(text: str, limits: Limits | None = DEFAULT_LIMITS) -> str:
    with pytest.raises(ManifestError) as info:
        load_manifest("app.yaml", text, limits)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith("app.yaml: ")
    return message


@pytest.mark.timeout(30)     # the old loader spent minutes and gigabytes here
@pytest.mark.parametrize("field", ["command", "env", "x-other"], ids=["command", "env", "unknown"])
def test_billion_laughs_is_refused_by_the_alias_budget(field: str) -> None:
    text = billion_laughs(field)
    assert len(text.encode()) < 1024
    message = error_of(text)
    assert "line 11, column 13: " in message      # inside x-6, the 7th level
    assert f"more than {yamlsafe.MAX_NODES} nodes once aliases are expanded" in message


@pytest.mark.parametrize(
    "nested",
    ["[" * 10_000 + "]" * 10_000, "{a: " * 10_000 + "1" + "}" * 10_000,
     "\n    " + "- " * 10_000 + "x"],
    ids=["flow-lists", "flow-mappings", "block-lists"],
)
def test_ten_thousand_levels_give_one_line_not_recursion_error(nested: str) -> None:
    message = error_of(SERVICE + f"  command: {nested}\n")
    assert f"nested deeper than {yamlsafe.MAX_DEPTH} levels" in message
    assert "line " in message and "RecursionError" not in message


def test_json_nesting_is_bounded_too() -> None:
    text = '{"apiVersion": "berth/v1", "kind": "Service", "metadata": {"name": "w"}, ' \
           '"spec": {"image": "b", "env": ' + "[" * 5000 + "]" * 5000 + "}}"
    assert "nested deeper than 64 levels" in error_of(text)


def test_depth_64_is_fine_and_65_is_not() -> None:
    # The document and its spec are two levels: 62 brackets make 64.
    deep = SERVICE + "  labels: " + "[" * 62 + "]" * 62 + "\n"
    assert "spec.labels: not supported yet" in error_of(deep)
    assert "nested deeper" in error_of(deep.replace("[" * 62, "[" * 63).replace(
        "]" * 62, "]" * 63))


def test_alias_to_its_own_container_is_refused() -> None:
    assert "recursive structures are not allowed" in error_of(SERVICE + "  command: &a [*a]\n")


def test_too_many_alias_references() -> None:
    refs = ", ".join(["*a"] * (yamlsafe.MAX_ALIASES + 1))
    text = SERVICE + f"  x-a: &a x\n  command: [{refs}]\n"
    assert f"more than {yamlsafe.MAX_ALIASES} alias references" in error_of(text)


def test_ordinary_anchors_and_merge_keys_still_work() -> None:
    text = SERVICE + "  env: &e {A: '1'}\n  command: &c [sh]\n  entrypoint: *c\n"
    (doc,) = load_manifest("app.yaml", text)
    assert isinstance(doc, ServiceDocument) and doc.spec.entrypoint == ["sh"]
    merged = ("apiVersion: berth/v1\nkind: Service\nmetadata: {name: web}\n"
              "spec: {<<: {image: busybox, replicas: 3}, replicas: 2}\n")
    (doc,) = load_manifest("app.yaml", merged)
    assert isinstance(doc, ServiceDocument) and doc.spec.replicas == 2


@pytest.mark.parametrize(
    ("value", "expected"),
    [("9" * 5000, "cannot read value: Exceeds the limit (4300 digits)"),
     ("0x" + "f" * 5000, "spec.replicas: a very large integer is more than the maximum"),
     ("2001-02-30", "cannot read value: day is out of range for month")],
    ids=["decimal-digits", "hex-digits", "bad-date"],
)
def test_scalars_python_cannot_convert_are_one_line(value: str, expected: str) -> None:
    assert expected in error_of(SERVICE.replace("replicas: 2", f"replicas: {value}"))


def test_replicas_over_the_limit_are_refused() -> None:
    message = error_of(SERVICE.replace("replicas: 2", "replicas: 1000000000"))
    assert message == ("app.yaml: Service/web: spec.replicas: 1000000000 is more than the "
                       "maximum of 100 replicas per service (berth-controller --max-replicas, or "
                       '"max-replicas" in controller.json)')
    assert load_manifest("a", SERVICE.replace("replicas: 2", "replicas: 100"))
    assert "maximum of 5 replicas" in error_of(SERVICE.replace("replicas: 2", "replicas: 6"),
                                               Limits(max_replicas=5))


def test_service_name_limit_derives_from_max_replicas() -> None:
    def named(length: int) -> str:
        return SERVICE.replace("name: web", "name: " + "a" * length)

    assert Limits(max_replicas=100).max_service_name == 59       # "-100"
    assert Limits(max_replicas=9).max_service_name == 61         # "-9"
    assert load_manifest("a", named(59))
    message = error_of(named(63))
    assert message == (
        f"app.yaml: Service/{'a' * 63}: metadata.name: a service name is at most 59 "
        "characters (got 63): its container names <name>-<replica> must fit in 63 "
        "characters with up to 100 replicas (berth-controller --max-replicas, or "
        '"max-replicas" in controller.json)')
    assert "at most 59 characters (got 60)" in error_of(named(60))
    assert load_manifest("a", named(61), Limits(max_replicas=9))
    # delete -f passes no limits: what was applied under other limits stays deletable.
    assert load_manifest("a", named(63), None)


@pytest.mark.parametrize(
    ("subnet", "why"),
    [("0.0.0.0/0", "0.0.0.0/0 is the default route"),
     ("8.0.0.0/7", "8.0.0.0/7 is broader than /8"),
     ("127.0.0.0/24", "overlaps 127.0.0.0/8 (loopback)"),
     ("169.254.10.0/24", "overlaps 169.254.0.0/16 (link-local)"),
     ("224.1.0.0/16", "overlaps 224.0.0.0/4 (multicast)"),
     ("239.0.0.0/8", "overlaps 224.0.0.0/4 (multicast)"),
     ("255.255.255.252/30", "overlaps 240.0.0.0/4 (reserved"),
     ("0.0.0.0/16", 'overlaps 0.0.0.0/8 (the unspecified "this network" range)')],
    ids=["default-route", "broader-than-8", "loopback", "link-local", "multicast",
         "multicast-8", "broadcast", "unspecified"],
)
def test_unusable_subnets_are_refused(subnet: str, why: str) -> None:
    message = error_of(NETWORK.replace("10.42.0.0/24", subnet))
    assert message.startswith("app.yaml: Network/appnet: spec.subnet: ")
    assert why in message and "not usable for containers" in message


@pytest.mark.parametrize("subnet", ["10.0.0.0/8", "172.16.0.0/12", "192.168.7.0/24",
                                    "100.64.0.0/10"])
def test_private_subnets_are_fine(subnet: str) -> None:
    assert load_manifest("a", NETWORK.replace("10.42.0.0/24", subnet))


def test_manifest_over_the_size_limit() -> None:
    text = SERVICE + "#" * MAX_MANIFEST_BYTES
    message = error_of(text)
    assert message == (f"app.yaml: manifest is {len(text)} bytes, more than the limit of "
                       f"{MAX_MANIFEST_BYTES} bytes (1 MiB); split it into several files")
    check_size("x", MAX_MANIFEST_BYTES)          # exactly the limit is fine
    # Multi-byte characters count as bytes, not characters.
    assert "manifest is" in error_of(SERVICE + "#" + "é" * (MAX_MANIFEST_BYTES // 2))


def test_source_with_a_newline_stays_one_line() -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest("evil\nname.yaml", "kind: [")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [("[" * 10_000, "nested deeper than 64 levels"),
     ("- " * 10_000, "nested deeper than 64 levels"),
     ("&a [*a]", "recursive structures are not allowed"),
     (billion_laughs(), "more than 100000 nodes once aliases are expanded"),
     ("x: !!int ", "cannot read value")],
    ids=["flow", "block", "recursive", "laughs", "empty-int"],
)
@pytest.mark.parametrize("loader", [yamlsafe.PyBoundedLoader, yamlsafe.BoundedLoader],
                         ids=["python", "default"])
def test_both_parsers_keep_the_budget(
    loader: type[yamlsafe.PyBoundedLoader], text: str, problem: str
) -> None:
    import yaml

    with pytest.raises(yaml.YAMLError) as info:
        yamlsafe.load_all(text, loader)
    assert problem in str(info.value)


def test_deeply_nested_stored_json_is_a_manifest_error() -> None:
    from berth.manifest import parse_document

    stored = ('{"apiVersion":"berth/v1","kind":"Service","metadata":{"name":"w"},'
              '"spec":{"image":"b","env":' + "[" * 10_000 + "]" * 10_000 + "}}")
    with pytest.raises(ManifestError) as info:
        parse_document("Service", stored)
    assert "recursion limit exceeded" in str(info.value) and "\n" not in str(info.value)


def test_aliases_of_a_long_string_are_charged_their_length() -> None:
    text = (SERVICE + "  x-s: &s " + "x" * 500_000 + "\n  command: [" +
            ", ".join(["*s"] * 1000) + "]\n")
    assert "more than 1048576 characters of values once aliases are expanded" in error_of(text)
