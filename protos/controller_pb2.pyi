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
    __slots__ = ("name", "address", "status", "agent_addr", "containers", "invalid", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    AGENT_ADDR_FIELD_NUMBER: _ClassVar[int]
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    INVALID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    address: str
    status: str
    agent_addr: str
    containers: int
    invalid: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., address: _Optional[str] = ..., status: _Optional[str] = ..., agent_addr: _Optional[str] = ..., containers: _Optional[int] = ..., invalid: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

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

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EtcdMember(_message.Message):
    __slots__ = ("name", "id", "client_urls", "peer_urls", "learner", "healthy", "error", "leader", "version", "db_size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_URLS_FIELD_NUMBER: _ClassVar[int]
    PEER_URLS_FIELD_NUMBER: _ClassVar[int]
    LEARNER_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DB_SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    id: str
    client_urls: _containers.RepeatedScalarFieldContainer[str]
    peer_urls: _containers.RepeatedScalarFieldContainer[str]
    learner: bool
    healthy: bool
    error: str
    leader: bool
    version: str
    db_size: int
    def __init__(self, name: _Optional[str] = ..., id: _Optional[str] = ..., client_urls: _Optional[_Iterable[str]] = ..., peer_urls: _Optional[_Iterable[str]] = ..., learner: _Optional[bool] = ..., healthy: _Optional[bool] = ..., error: _Optional[str] = ..., leader: _Optional[bool] = ..., version: _Optional[str] = ..., db_size: _Optional[int] = ...) -> None: ...

class DriverSupport(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("name", "status", "version", "kernel", "cgroup", "runtime", "labels", "drivers")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    CGROUP_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    DRIVERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: str
    version: str
    kernel: str
    cgroup: str
    runtime: str
    labels: _containers.ScalarMap[str, str]
    drivers: _containers.RepeatedCompositeFieldContainer[DriverSupport]
    def __init__(self, name: _Optional[str] = ..., status: _Optional[str] = ..., version: _Optional[str] = ..., kernel: _Optional[str] = ..., cgroup: _Optional[str] = ..., runtime: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., drivers: _Optional[_Iterable[_Union[DriverSupport, _Mapping]]] = ...) -> None: ...

class CertificateInfo(_message.Message):
    __slots__ = ("role", "subject", "not_after", "error")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    role: str
    subject: str
    not_after: str
    error: str
    def __init__(self, role: _Optional[str] = ..., subject: _Optional[str] = ..., not_after: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("version", "etcd_members", "etcd_error", "nodes", "tls", "certificates")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ETCD_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    ETCD_ERROR_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    version: str
    etcd_members: _containers.RepeatedCompositeFieldContainer[EtcdMember]
    etcd_error: str
    nodes: _containers.RepeatedCompositeFieldContainer[NodeInfo]
    tls: bool
    certificates: _containers.RepeatedCompositeFieldContainer[CertificateInfo]
    def __init__(self, version: _Optional[str] = ..., etcd_members: _Optional[_Iterable[_Union[EtcdMember, _Mapping]]] = ..., etcd_error: _Optional[str] = ..., nodes: _Optional[_Iterable[_Union[NodeInfo, _Mapping]]] = ..., tls: _Optional[bool] = ..., certificates: _Optional[_Iterable[_Union[CertificateInfo, _Mapping]]] = ...) -> None: ...
