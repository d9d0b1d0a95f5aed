from protos import common_pb2 as _common_pb2
from protos import netcheck_pb2 as _netcheck_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ApplyRequest(_message.Message):
    __slots__ = ("source", "manifest", "dry_run")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    source: str
    manifest: bytes
    dry_run: bool
    def __init__(self, source: _Optional[str] = ..., manifest: _Optional[bytes] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class AppliedObject(_message.Message):
    __slots__ = ("kind", "name", "action")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    action: str
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., action: _Optional[str] = ...) -> None: ...

class ApplyResponse(_message.Message):
    __slots__ = ("objects", "revision")
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    objects: _containers.RepeatedCompositeFieldContainer[AppliedObject]
    revision: int
    def __init__(self, objects: _Optional[_Iterable[_Union[AppliedObject, _Mapping]]] = ..., revision: _Optional[int] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("kind", "name")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ContainerNetwork(_message.Message):
    __slots__ = ("ip", "mac")
    IP_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    ip: str
    mac: str
    def __init__(self, ip: _Optional[str] = ..., mac: _Optional[str] = ...) -> None: ...

class PortBinding(_message.Message):
    __slots__ = ("host_ip", "host_port", "container_port", "protocol")
    HOST_IP_FIELD_NUMBER: _ClassVar[int]
    HOST_PORT_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    host_ip: str
    host_port: int
    container_port: int
    protocol: str
    def __init__(self, host_ip: _Optional[str] = ..., host_port: _Optional[int] = ..., container_port: _Optional[int] = ..., protocol: _Optional[str] = ...) -> None: ...

class Container(_message.Message):
    __slots__ = ("name", "service", "node", "state", "exit_code", "pid", "started_at", "finished_at", "error", "image", "networks", "generation", "observed_generation", "invalid", "ports", "network_mode")
    class NetworksEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ContainerNetwork
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ContainerNetwork, _Mapping]] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_GENERATION_FIELD_NUMBER: _ClassVar[int]
    INVALID_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    NETWORK_MODE_FIELD_NUMBER: _ClassVar[int]
    name: str
    service: str
    node: str
    state: str
    exit_code: int
    pid: int
    started_at: str
    finished_at: str
    error: str
    image: str
    networks: _containers.MessageMap[str, ContainerNetwork]
    generation: int
    observed_generation: int
    invalid: str
    ports: _containers.RepeatedCompositeFieldContainer[PortBinding]
    network_mode: str
    def __init__(self, name: _Optional[str] = ..., service: _Optional[str] = ..., node: _Optional[str] = ..., state: _Optional[str] = ..., exit_code: _Optional[int] = ..., pid: _Optional[int] = ..., started_at: _Optional[str] = ..., finished_at: _Optional[str] = ..., error: _Optional[str] = ..., image: _Optional[str] = ..., networks: _Optional[_Mapping[str, ContainerNetwork]] = ..., generation: _Optional[int] = ..., observed_generation: _Optional[int] = ..., invalid: _Optional[str] = ..., ports: _Optional[_Iterable[_Union[PortBinding, _Mapping]]] = ..., network_mode: _Optional[str] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("name", "address", "status", "agent_addr", "containers", "invalid")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    AGENT_ADDR_FIELD_NUMBER: _ClassVar[int]
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    INVALID_FIELD_NUMBER: _ClassVar[int]
    name: str
    address: str
    status: str
    agent_addr: str
    containers: int
    invalid: str
    def __init__(self, name: _Optional[str] = ..., address: _Optional[str] = ..., status: _Optional[str] = ..., agent_addr: _Optional[str] = ..., containers: _Optional[int] = ..., invalid: _Optional[str] = ...) -> None: ...

class Service(_message.Message):
    __slots__ = ("name", "image", "replicas", "running", "spec_json", "invalid")
    NAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    INVALID_FIELD_NUMBER: _ClassVar[int]
    name: str
    image: str
    replicas: int
    running: int
    spec_json: str
    invalid: str
    def __init__(self, name: _Optional[str] = ..., image: _Optional[str] = ..., replicas: _Optional[int] = ..., running: _Optional[int] = ..., spec_json: _Optional[str] = ..., invalid: _Optional[str] = ...) -> None: ...

class Network(_message.Message):
    __slots__ = ("name", "driver", "subnet", "vni", "endpoints", "gateway", "invalid", "nodes", "internal", "options", "mtu", "ip_range")
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
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    INVALID_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    INTERNAL_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    MTU_FIELD_NUMBER: _ClassVar[int]
    IP_RANGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    driver: str
    subnet: str
    vni: int
    endpoints: int
    gateway: str
    invalid: str
    nodes: _containers.RepeatedScalarFieldContainer[str]
    internal: bool
    options: _containers.ScalarMap[str, str]
    mtu: int
    ip_range: str
    def __init__(self, name: _Optional[str] = ..., driver: _Optional[str] = ..., subnet: _Optional[str] = ..., vni: _Optional[int] = ..., endpoints: _Optional[int] = ..., gateway: _Optional[str] = ..., invalid: _Optional[str] = ..., nodes: _Optional[_Iterable[str]] = ..., internal: _Optional[bool] = ..., options: _Optional[_Mapping[str, str]] = ..., mtu: _Optional[int] = ..., ip_range: _Optional[str] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("nodes", "services", "containers", "networks")
    NODES_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    services: _containers.RepeatedCompositeFieldContainer[Service]
    containers: _containers.RepeatedCompositeFieldContainer[Container]
    networks: _containers.RepeatedCompositeFieldContainer[Network]
    def __init__(self, nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., services: _Optional[_Iterable[_Union[Service, _Mapping]]] = ..., containers: _Optional[_Iterable[_Union[Container, _Mapping]]] = ..., networks: _Optional[_Iterable[_Union[Network, _Mapping]]] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("kind", "name", "source", "manifest")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    source: str
    manifest: bytes
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., source: _Optional[str] = ..., manifest: _Optional[bytes] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("objects",)
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    objects: _containers.RepeatedCompositeFieldContainer[AppliedObject]
    def __init__(self, objects: _Optional[_Iterable[_Union[AppliedObject, _Mapping]]] = ...) -> None: ...

class ImagePullRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...
