"""The embedded schema subset and the parameter checker."""

from __future__ import annotations

import pytest
from shared_data import shared_path

from pvha.fakepve import schema


def test_embedded_subset_matches_pve_apidata() -> None:
    shared = shared_path()
    if shared is None:
        pytest.skip("../shared (PVE API schema) is not beside this checkout")
    assert schema.build_subset(shared / "pve-api" / "apidata-pve9.json") == schema.endpoints()


def test_every_served_endpoint_has_a_handler() -> None:
    from pvha.fakepve import api

    for method, path in schema.SERVED:
        if path != "/access/ticket":
            name = api._handler_name(f"{method} {path}").split(":")[0]
            assert hasattr(api.Api, "h_" + name), path


@pytest.mark.parametrize(("spec", "value", "message"), [
    ({"type": "boolean"}, "True", "type check ('boolean') failed - got 'True'"),
    ({"type": "boolean"}, "1", None),
    ({"type": "integer", "minimum": 0}, "-1", "value must have a minimum value of 0"),
    ({"type": "integer"}, "1.5", "type check ('integer') failed - got '1.5'"),
    ({"type": "number"}, "1.5", None),
    ({"type": "string", "format": "pve-node"}, "bad_name",
     "value does not look like a valid node name"),
    ({"type": "string", "enum": ["a", "b"]}, "c",
     "value 'c' does not have a value in the enumeration 'a, b'"),
])
def test_check_value(spec: dict[str, object], value: str, message: str | None) -> None:
    assert schema.check_value(spec, value) == message


def test_match_paths() -> None:
    key, params, _ = schema.match("GET", "/nodes/n1/tasks/UPID:n1:0:0:0:x::u:/log")
    assert key == "GET /nodes/{node}/tasks/{upid}/log" and params["node"] == "n1"
    assert schema.match("PUT", "/nodes/n1/status")[0] is None
    assert schema.match("GET", "/nope")[0] is None
