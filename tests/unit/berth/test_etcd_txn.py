"""Pure logic of berth.etcd: prefix ranges, transaction builders, error mapping."""

from __future__ import annotations

import grpc
import pytest

from berth.errors import PermanentError, TemporaryError
from berth.etcd import txn
from berth.etcd.client import Etcd3Client
from berth.etcd.errors import (
    EtcdError,
    EtcdPermissionDenied,
    EtcdUnavailable,
    from_status,
    is_transient,
)
from berth.etcd.model import prefix_range_end
from protos.etcd import rpc_pb2


@pytest.mark.parametrize(
    ("prefix", "end"),
    [
        (b"/berth/nodes/", b"/berth/nodes0"),
        (b"a", b"b"),
        (b"aa", b"ab"),
        (b"a\xff", b"b"),
        (b"a\xff\xff", b"b"),
        (b"\xff", b"\0"),
        (b"", b"\0"),
        ("é/".encode(), "é0".encode()),
    ],
    ids=["slash", "one-byte", "two-bytes", "trailing-ff", "two-trailing-ff", "all-ff", "empty",
         "utf8"],
)  # fmt: skip
def test_prefix_range_end(prefix: bytes, end: bytes) -> None:
    assert prefix_range_end(prefix) == end


def test_prefix_range_covers_exactly_the_prefix() -> None:
    prefix = b"/berth/assign/h1/"
    end = prefix_range_end(prefix)
    assert prefix <= prefix + b"\xff\xff" < end
    assert not (prefix <= b"/berth/assign/h10" < end)


@pytest.mark.parametrize(
    ("compare", "target", "result", "field", "operand"),
    [
        (txn.version("k") == 0, rpc_pb2.Compare.VERSION, rpc_pb2.Compare.EQUAL, "version", 0),
        (txn.mod("k") != 7, rpc_pb2.Compare.MOD, rpc_pb2.Compare.NOT_EQUAL, "mod_revision", 7),
        (txn.create("k") < 3, rpc_pb2.Compare.CREATE, rpc_pb2.Compare.LESS, "create_revision", 3),
        (txn.value("k") > "a", rpc_pb2.Compare.VALUE, rpc_pb2.Compare.GREATER, "value", b"a"),
        (txn.lease("k") == 9, rpc_pb2.Compare.LEASE, rpc_pb2.Compare.EQUAL, "lease", 9),
    ],
    ids=["version-eq", "mod-ne", "create-lt", "value-gt", "lease-eq"],
)
def test_compare_wire_form(
    compare: txn.Compare, target: int, result: int, field: str, operand: int | bytes
) -> None:
    pb = compare.to_pb()
    assert (pb.key, pb.target, pb.result) == (b"k", target, result)
    assert pb.WhichOneof("target_union") == field
    assert getattr(pb, field) == operand


@pytest.mark.parametrize(
    "build",
    [lambda: txn.version("k") == "0", lambda: txn.mod("k") == True, lambda: txn.value("k") == 1],  # noqa: E712
    ids=["version-str", "mod-bool", "value-int"],
)
def test_compare_rejects_wrong_operand_type(build: object) -> None:
    assert callable(build)
    with pytest.raises(TypeError):
        build()


def test_txn_request_ops() -> None:
    req = txn.txn_request(
        [txn.version("/a") == 0],
        [txn.put("/a", "v", lease=5), txn.delete_prefix("/p/"), txn.get_prefix("/p/")],
        [txn.get("/a"), txn.delete("/a")],
    )
    put, delete, get_prefix = req.success
    assert (put.request_put.key, put.request_put.value, put.request_put.lease) == (b"/a", b"v", 5)
    assert delete.request_delete_range.range_end == b"/p0"
    assert get_prefix.request_range.range_end == b"/p0"
    assert get_prefix.request_range.sort_order == rpc_pb2.RangeRequest.ASCEND
    get, delete_one = req.failure
    assert (get.request_range.key, get.request_range.range_end) == (b"/a", b"")
    assert delete_one.request_delete_range.range_end == b""


def test_txn_request_refuses_foreign_objects() -> None:
    with pytest.raises(TypeError, match="compare"):
        txn.txn_request([("version", "k", 0)], [], [])
    with pytest.raises(TypeError, match="op"):
        txn.txn_request([], [rpc_pb2.RequestOp()], [])


def test_txn_responses_map_ranges_to_listings() -> None:
    resp = rpc_pb2.TxnResponse(succeeded=True)
    resp.header.revision = 42
    resp.responses.add().response_put.SetInParent()
    rng = resp.responses.add().response_range
    kv = rng.kvs.add(key=b"/a", value=b"1", create_revision=2, mod_revision=3, version=1)
    assert kv.key == b"/a"
    listing_none, listing = txn.txn_responses(resp)
    assert listing_none is None
    assert listing is not None
    assert listing.revision == 42  # falls back to the txn header
    assert [(m.key, v, m.mod_revision) for v, m in listing.items] == [("/a", b"1", 3)]


def test_client_exposes_builders_python_etcd3_style() -> None:
    c = Etcd3Client("127.0.0.1:1").transactions
    assert (c.version("k") == 0) == txn.Compare("k", "version", "==", 0)


@pytest.mark.parametrize(
    ("code", "kind", "transient"),
    [
        (grpc.StatusCode.UNAVAILABLE, TemporaryError, True),
        (grpc.StatusCode.DEADLINE_EXCEEDED, TemporaryError, True),
        (grpc.StatusCode.INVALID_ARGUMENT, PermanentError, False),
        (grpc.StatusCode.OUT_OF_RANGE, PermanentError, False),
    ],
    ids=["unavailable", "deadline", "invalid", "out-of-range"],
)
def test_error_mapping(code: grpc.StatusCode, kind: type[Exception], transient: bool) -> None:
    err = from_status(code, "etcdserver: boom", "put /k")
    assert isinstance(err, kind)
    assert isinstance(err, EtcdUnavailable | EtcdError)
    assert err.code == code
    assert str(err) == f"etcd put /k: {code.name}: etcdserver: boom"
    assert is_transient(err) is transient


@pytest.mark.parametrize(
    ("code", "details"),
    [
        (grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied"),
        (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: user name is empty"),
        (grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: user name not found"),
    ],
    ids=["denied", "no-user", "removed-user"],
)
def test_rbac_refusals_are_one_permission_error_naming_the_operation(
    code: grpc.StatusCode, details: str
) -> None:
    err = from_status(code, details, "put /berth/desired/x")
    assert isinstance(err, EtcdPermissionDenied) and not is_transient(err)
    reason = details.removeprefix("etcdserver: ")
    assert str(err) == (f"etcd refused put /berth/desired/x: {reason} "
                        "(the etcd user is the client certificate's CN)")


def test_a_transaction_is_described_by_its_keys() -> None:
    assert txn.describe([], [], []) == "transaction"
    assert txn.describe([txn.mod("/a") == 3], [txn.put("/b", b"x"), txn.delete("/a")], []) == (
        "transaction on /b, /a")
    many = [txn.delete(f"/k{i}") for i in range(5)]
    assert txn.describe([], many, []) == "transaction on /k0, /k1, /k2 and 2 more"
