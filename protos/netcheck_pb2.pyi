from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NetDiagRequest(_message.Message):
    __slots__ = ("network", "driver", "vni", "subnet", "names", "local")
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    VNI_FIELD_NUMBER: _ClassVar[int]
    SUBNET_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    network: str
    driver: str
    vni: int
    subnet: str
    names: _containers.RepeatedScalarFieldContainer[str]
    local: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, network: _Optional[str] = ..., driver: _Optional[str] = ..., vni: _Optional[int] = ..., subnet: _Optional[str] = ..., names: _Optional[_Iterable[str]] = ..., local: _Optional[_Iterable[str]] = ...) -> None: ...

class LinkFact(_message.Message):
    __slots__ = ("name", "present", "kind", "up", "master", "mtu", "want_kind")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    MASTER_FIELD_NUMBER: _ClassVar[int]
    MTU_FIELD_NUMBER: _ClassVar[int]
    WANT_KIND_FIELD_NUMBER: _ClassVar[int]
    name: str
    present: bool
    kind: str
    up: bool
    master: str
    mtu: int
    want_kind: str
    def __init__(self, name: _Optional[str] = ..., present: _Optional[bool] = ..., kind: _Optional[str] = ..., up: _Optional[bool] = ..., master: _Optional[str] = ..., mtu: _Optional[int] = ..., want_kind: _Optional[str] = ...) -> None: ...

class FdbFact(_message.Message):
    __slots__ = ("device", "mac", "dst")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    device: str
    mac: str
    dst: str
    def __init__(self, device: _Optional[str] = ..., mac: _Optional[str] = ..., dst: _Optional[str] = ...) -> None: ...

class NeighFact(_message.Message):
    __slots__ = ("device", "ip", "mac")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    device: str
    ip: str
    mac: str
    def __init__(self, device: _Optional[str] = ..., ip: _Optional[str] = ..., mac: _Optional[str] = ...) -> None: ...

class RouteFact(_message.Message):
    __slots__ = ("dst", "device", "gateway")
    DST_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    dst: str
    device: str
    gateway: str
    def __init__(self, dst: _Optional[str] = ..., device: _Optional[str] = ..., gateway: _Optional[str] = ...) -> None: ...

class NameFact(_message.Message):
    __slots__ = ("name", "ips", "endpoint", "endpoint_ip", "endpoint_node")
    NAME_FIELD_NUMBER: _ClassVar[int]
    IPS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_IP_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_NODE_FIELD_NUMBER: _ClassVar[int]
    name: str
    ips: _containers.RepeatedScalarFieldContainer[str]
    endpoint: bool
    endpoint_ip: str
    endpoint_node: str
    def __init__(self, name: _Optional[str] = ..., ips: _Optional[_Iterable[str]] = ..., endpoint: _Optional[bool] = ..., endpoint_ip: _Optional[str] = ..., endpoint_node: _Optional[str] = ...) -> None: ...

class LocalFact(_message.Message):
    __slots__ = ("container", "attached", "host_ifname", "present", "up", "master", "resolver")
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    ATTACHED_FIELD_NUMBER: _ClassVar[int]
    HOST_IFNAME_FIELD_NUMBER: _ClassVar[int]
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    MASTER_FIELD_NUMBER: _ClassVar[int]
    RESOLVER_FIELD_NUMBER: _ClassVar[int]
    container: str
    attached: bool
    host_ifname: str
    present: bool
    up: bool
    master: str
    resolver: bool
    def __init__(self, container: _Optional[str] = ..., attached: _Optional[bool] = ..., host_ifname: _Optional[str] = ..., present: _Optional[bool] = ..., up: _Optional[bool] = ..., master: _Optional[str] = ..., resolver: _Optional[bool] = ...) -> None: ...

class NetDiagResponse(_message.Message):
    __slots__ = ("node", "host_ip", "links", "fdb", "neighbours", "routes", "names", "locals")
    NODE_FIELD_NUMBER: _ClassVar[int]
    HOST_IP_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    FDB_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOURS_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    LOCALS_FIELD_NUMBER: _ClassVar[int]
    node: str
    host_ip: str
    links: _containers.RepeatedCompositeFieldContainer[LinkFact]
    fdb: _containers.RepeatedCompositeFieldContainer[FdbFact]
    neighbours: _containers.RepeatedCompositeFieldContainer[NeighFact]
    routes: _containers.RepeatedCompositeFieldContainer[RouteFact]
    names: _containers.RepeatedCompositeFieldContainer[NameFact]
    locals: _containers.RepeatedCompositeFieldContainer[LocalFact]
    def __init__(self, node: _Optional[str] = ..., host_ip: _Optional[str] = ..., links: _Optional[_Iterable[_Union[LinkFact, _Mapping]]] = ..., fdb: _Optional[_Iterable[_Union[FdbFact, _Mapping]]] = ..., neighbours: _Optional[_Iterable[_Union[NeighFact, _Mapping]]] = ..., routes: _Optional[_Iterable[_Union[RouteFact, _Mapping]]] = ..., names: _Optional[_Iterable[_Union[NameFact, _Mapping]]] = ..., locals: _Optional[_Iterable[_Union[LocalFact, _Mapping]]] = ...) -> None: ...

class NetCheckRequest(_message.Message):
    __slots__ = ("network",)
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    network: str
    def __init__(self, network: _Optional[str] = ...) -> None: ...

class NetCheckPort(_message.Message):
    __slots__ = ("container_port", "host_port", "protocol")
    CONTAINER_PORT_FIELD_NUMBER: _ClassVar[int]
    HOST_PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    container_port: int
    host_port: int
    protocol: str
    def __init__(self, container_port: _Optional[int] = ..., host_port: _Optional[int] = ..., protocol: _Optional[str] = ...) -> None: ...

class NetCheckMember(_message.Message):
    __slots__ = ("container", "node", "ip", "mac", "host_ip", "ports")
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    HOST_IP_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    container: str
    node: str
    ip: str
    mac: str
    host_ip: str
    ports: _containers.RepeatedCompositeFieldContainer[NetCheckPort]
    def __init__(self, container: _Optional[str] = ..., node: _Optional[str] = ..., ip: _Optional[str] = ..., mac: _Optional[str] = ..., host_ip: _Optional[str] = ..., ports: _Optional[_Iterable[_Union[NetCheckPort, _Mapping]]] = ...) -> None: ...

class NodeFacts(_message.Message):
    __slots__ = ("node", "error", "facts")
    NODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FACTS_FIELD_NUMBER: _ClassVar[int]
    node: str
    error: str
    facts: NetDiagResponse
    def __init__(self, node: _Optional[str] = ..., error: _Optional[str] = ..., facts: _Optional[_Union[NetDiagResponse, _Mapping]] = ...) -> None: ...

class NetCheckNetwork(_message.Message):
    __slots__ = ("name", "driver", "subnet", "vni", "options", "internal", "members", "nodes")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    SUBNET_FIELD_NUMBER: _ClassVar[int]
    VNI_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    INTERNAL_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    name: str
    driver: str
    subnet: str
    vni: int
    options: _containers.ScalarMap[str, str]
    internal: bool
    members: _containers.RepeatedCompositeFieldContainer[NetCheckMember]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeFacts]
    def __init__(self, name: _Optional[str] = ..., driver: _Optional[str] = ..., subnet: _Optional[str] = ..., vni: _Optional[int] = ..., options: _Optional[_Mapping[str, str]] = ..., internal: _Optional[bool] = ..., members: _Optional[_Iterable[_Union[NetCheckMember, _Mapping]]] = ..., nodes: _Optional[_Iterable[_Union[NodeFacts, _Mapping]]] = ...) -> None: ...

class NetCheckResponse(_message.Message):
    __slots__ = ("networks",)
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    networks: _containers.RepeatedCompositeFieldContainer[NetCheckNetwork]
    def __init__(self, networks: _Optional[_Iterable[_Union[NetCheckNetwork, _Mapping]]] = ...) -> None: ...
