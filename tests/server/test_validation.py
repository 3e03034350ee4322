"""The contract-driven request check on repeated free-form JSON (a bulk insert's rows): each item's text is checked
without walking the message descriptor once per row, and a NUL names the row."""

from __future__ import annotations

import pytest
from hyphae.api.v1 import json_pb2
from hyphae.tables.v1 import table_service_pb2 as pb

from server.errors import InvalidArgument
from server.validation import check_request


def test_a_nul_in_one_of_many_json_rows_names_that_row() -> None:
    rows = [json_pb2.Json(raw='{"a": 1}') for _ in range(1000)]
    rows[717] = json_pb2.Json(raw='{"a": "x\x00y"}')
    with pytest.raises(InvalidArgument) as error:
        check_request(pb.BulkInsertRowsRequest(name="t", rows=rows))
    assert error.value.field == "rows[717].raw"


def test_json_rows_without_nul_pass_and_an_empty_list_is_still_required() -> None:
    check_request(pb.BulkInsertRowsRequest(name="t", rows=[json_pb2.Json(raw='{"a": "b"}')] * 3))
    with pytest.raises(InvalidArgument) as error:
        check_request(pb.BulkInsertRowsRequest(name="t"))
    assert error.value.field == "rows"
