"""Manifest v1: what a user sees for good and bad files (berth.manifest)."""

from __future__ import annotations

import json

import pytest

from berth.errors import ManifestError
from berth.manifest import (
    NetworkDocument,
    ServiceDocument,
    load_manifest,
    manifest_json_schema,
    parse_document,
)

GOOD = """\
apiVersion: berth/v1
kind: Network
metadata: {name: appnet, labels: {team: web}}
spec: {driver: overlay, subnet: 10.42.0.0/24, options: {}}
---
apiVersion: berth/v1
kind: Service
metadata: {name: web}
spec:
  replicas: 2
  image: busybox:latest
  command: [httpd, -f, -p, "80"]
  entrypoint: /bin/sh -c 'exec "$@"' --
  env: [MODE=prod, "URL=http://x/?a=b"]
  workdir: /www
  networks: {appnet: {aliases: [frontend], ip: 10.42.0.9}}
  placement: {node: host2}
"""


def _error(text: str) -> str:
    with pytest.raises(ManifestError) as info:
        load_manifest("app.yaml", text)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_good_file_round_trip() -> None:
    net, web = load_manifest("app.yaml", GOOD)
    assert isinstance(net, NetworkDocument) and isinstance(web, ServiceDocument)
    assert net.spec.gateway == "10.42.0.1"          # default: first host
    assert net.metadata.labels == {"team": "web"}
    assert web.spec.entrypoint == ["/bin/sh", "-c", 'exec "$@"', "--"]
    assert web.spec.environment() == {"MODE": "prod", "URL": "http://x/?a=b"}
    assert web.spec.attachments()["appnet"].aliases == ["frontend"]
    assert web.spec.placement.node == "host2"
    again = parse_document("Service", web.to_json())
    assert again == web and again.to_json() == web.to_json()
    assert parse_document("Network", net.to_json()) == net


def test_equivalent_shapes_store_identically() -> None:
    short = GOOD.replace("{appnet: {aliases: [frontend], ip: 10.42.0.9}}", "[appnet]")
    short = short.replace('[MODE=prod, "URL=http://x/?a=b"]', "{MODE: prod, URL: 'http://x/?a=b'}")
    long = short.replace("[appnet]", "{appnet: null}").replace("{MODE: prod,", "{MODE: 'prod',")
    assert load_manifest("a", short)[1].to_json() == load_manifest("b", long)[1].to_json()


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("replicas: 2", "replica: 2",
         'app.yaml: Service/web: spec.replica: unknown field (did you mean "replicas"?)'),
        ("replicas: 2", 'replicas: "2"',
         'app.yaml: Service/web: spec.replicas: wrong type: expected integer, got string "2"'),
        ("kind: Service", "kind: Servce",
         'app.yaml: document 2: kind: unknown kind "Servce" (expected Network or Service)'),
        ("replicas: 2", "replicas: 2\n  volumes: ['/srv:/srv']",
         "app.yaml: Service/web: spec.volumes: not supported yet"),
        ("replicas: 2", "replicas: 2\n  restart: always",
         "app.yaml: Service/web: spec.restart: not supported yet"),
        ("placement: {node: host2}", "placement: {constraints: [a=b]}",
         "app.yaml: Service/web: spec.placement.constraints: not supported yet"),
        ("driver: overlay", "driver: host",
         'app.yaml: Network/appnet: spec.driver: driver "host" is not a network driver here: '
         "use network_mode: host on the service"),
        ("options: {}", "options: {mtu: '1400'}",
         'app.yaml: Network/appnet: spec.options.mtu: unknown option "mtu" for driver overlay '
         "(it takes none)"),
        ("{appnet: {aliases: [frontend], ip: 10.42.0.9}}", "[appnet, Bad_Net]",
         'app.yaml: Service/web: spec.networks[1]: invalid name "Bad_Net": must be a DNS label '
         "(lower-case letters, digits and '-', at most 63 characters)"),
        ('[httpd, -f, -p, "80"]', "[httpd, -p, 80]",
         "app.yaml: Service/web: spec.command[2]: wrong type: expected string, got integer 80"),
        ("subnet: 10.42.0.0/24", "subnet: 10.42.0.0/24, gateway: 10.43.0.1",
         "app.yaml: Network/appnet: spec.gateway: 10.43.0.1 is not a host address of "
         "10.42.0.0/24"),
        ("subnet: 10.42.0.0/24", "subnet: 10.42.0.1/24",
         "app.yaml: Network/appnet: spec.subnet: not an IPv4 CIDR: 10.42.0.1/24 has host bits set"),
        ("kind: Service\nmetadata: {name: web}", "kind: Service\nmetadata: {name: web_1}",
         'app.yaml: Service/web_1: metadata.name: invalid name "web_1": must be a DNS label '
         "(lower-case letters, digits and '-', at most 63 characters)"),
        ("  image: busybox:latest\n", "",
         "app.yaml: Service/web: spec.image: required field is missing"),
        ('env: [MODE=prod, "URL=http://x/?a=b"]', "env: [MODE]",
         'app.yaml: Service/web: spec.env: item 0: expected KEY=VALUE, got "MODE"'),
        ("apiVersion: berth/v1\nkind: Service", "apiVersion: v1\nkind: Service",
         'app.yaml: Service/web: apiVersion: unsupported apiVersion "v1" (expected berth/v1)'),
        ("kind: Network\n", "kind: Network\n  bad: [",
         "app.yaml: line 3, column 6: invalid YAML: mapping values are not allowed in this "
         "context"),
    ],
    ids=[
        "misspelled-field", "wrong-type", "unknown-kind", "unsupported-ports",
        "unsupported-restart", "unsupported-constraints", "driver-not-yet", "options-not-yet",
        "bad-network-name", "non-string-arg", "gateway-outside", "subnet-host-bits",
        "bad-object-name", "missing-image", "env-without-value", "wrong-api-version",
        "yaml-syntax",
    ],
)
def test_bad_file_one_line_error(old: str, new: str, expected: str) -> None:
    assert old in GOOD
    assert _error(GOOD.replace(old, new, 1)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "app.yaml: no documents in file"),
        ("---\n---\n", "app.yaml: no documents in file"),
        ("- a\n- b\n", "app.yaml: document 1: expected a mapping with apiVersion, kind, "
                       "metadata and spec, got list"),
        ("apiVersion: berth/v1\nmetadata: {name: x}\n",
         "app.yaml: document 1: kind: required field is missing (expected Network or Service)"),
        ("apiVersion: berth/v1\nkind: Service\nmetadata: {}\nspec: {image: x}\n",
         "app.yaml: document 1: metadata.name: required field is missing"),
    ],
    ids=["empty", "only-separators", "not-a-mapping", "no-kind", "no-name"],
)
def test_malformed_documents(text: str, expected: str) -> None:
    assert _error(text) == expected


def test_duplicate_name_in_one_file() -> None:
    second = GOOD.split("---\n")[1]
    assert _error(GOOD + "---\n" + second) == (
        "app.yaml: Service/web: metadata.name: duplicate: Service/web is defined by "
        "documents 2 and 3")


def test_several_errors_are_counted_on_one_line() -> None:
    bad = GOOD.replace("replicas: 2", "replicas: -1\n  ports: [70000]\n  volumez: []")
    assert _error(bad) == ("app.yaml: Service/web: spec.replicas: Input should be greater than "
                           "or equal to 0 (and 2 more)")


def test_null_unsupported_field_counts_as_absent() -> None:
    web = load_manifest("app.yaml", GOOD.replace("replicas: 2", "replicas: 2\n  hostname:"))[1]
    assert isinstance(web, ServiceDocument) and b"hostname" not in web.to_json()


def test_json_schema_describes_supported_fields_only() -> None:
    schema = manifest_json_schema()
    text = json.dumps(schema)
    service = schema["$defs"]["ServiceSpec"]
    assert {"replicas", "image", "networks", "placement", "ports", "network_mode"} <= set(
        service["properties"])
    assert "hostname" not in service["properties"] and "volumes" not in service["properties"]
    network = schema["$defs"]["NetworkSpec"]["properties"]
    assert network["driver"]["enum"] == ["overlay", "bridge", "macvlan"]
    assert {"internal", "mtu", "ip_range", "aux_addresses", "options"} <= set(network)
    assert "ipv6" not in network
    assert service["additionalProperties"] is False
    assert "berth/v1" in text and schema["discriminator"]["propertyName"] == "kind"
