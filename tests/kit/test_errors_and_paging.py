"""Domain errors become gRPC statuses with details the caller can read back."""

from __future__ import annotations

import base64

import grpc
import pytest
from google.rpc import error_details_pb2

from pos_kit.errors import Conflict, FieldViolation, InvalidArgument, NotFound
from pos_kit.grpc_server import status_for
from pos_kit.ids import has_prefix, new_id
from pos_kit.paging import MAX_PAGE_SIZE, decode_token, encode_token, page_size


def test_field_violations_travel_as_bad_request_details() -> None:
    status = status_for(InvalidArgument("bad", [FieldViolation("email", "must be an email")]))
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    kinds = {d.TypeName() for d in status.details}
    assert kinds == {"google.rpc.ErrorInfo", "google.rpc.BadRequest"}
    bad = error_details_pb2.BadRequest()
    next(d for d in status.details if d.Is(bad.DESCRIPTOR)).Unpack(bad)
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("email", "must be an email")
    ]


def test_a_huge_error_still_fits_the_trailer_a_client_accepts() -> None:
    # 300 unknown SKUs, each a violation, and a metadata value naming them all: as it was, the
    # trailer passed gRPC's 8 KiB default and the caller got RESOURCE_EXHAUSTED instead.
    skus = [f"SKU-{i:05d}-" + "x" * 40 for i in range(300)]
    error = InvalidArgument("unknown SKUs", [FieldViolation(f"skus[{s}]", "unknown") for s in skus])
    error.metadata["skus"] = ",".join(skus)
    status = status_for(error)
    assert len(base64.b64encode(status.SerializeToString())) < 8 * 1024 - 512
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    assert info.reason == "invalid_argument"
    assert info.metadata["skus"].startswith("SKU-00000-")
    bad = error_details_pb2.BadRequest()
    status.details[1].Unpack(bad)
    # The first violations survive, in order; the tail is dropped.
    assert 0 < len(bad.field_violations) < 300
    assert bad.field_violations[0].field == f"skus[{skus[0]}]"


@pytest.mark.parametrize(
    ("error", "code", "reason"),
    [
        (NotFound("order", "ord_1"), grpc.StatusCode.NOT_FOUND, "resource_missing"),
        (
            Conflict("stale", "version_mismatch"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "version_mismatch",
        ),
    ],
)
def test_error_reason_is_the_stable_code(error, code, reason) -> None:  # type: ignore[no-untyped-def]
    status = status_for(error)
    assert status.code == code.value[0]
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    assert info.reason == reason


def test_page_tokens_round_trip_and_sizes_are_bounded() -> None:
    assert decode_token(encode_token("cus_123")) == "cus_123"
    assert decode_token("") is None
    assert page_size(0) == 50
    assert page_size(MAX_PAGE_SIZE) == MAX_PAGE_SIZE
    with pytest.raises(InvalidArgument):
        page_size(MAX_PAGE_SIZE + 1)
    with pytest.raises(InvalidArgument):
        decode_token("\xff")


def test_ids_are_prefixed_unique_and_time_ordered() -> None:
    ids = [new_id("ord") for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(has_prefix(i, "ord") for i in ids)
    assert ids[0][:14] <= ids[-1][:14]
