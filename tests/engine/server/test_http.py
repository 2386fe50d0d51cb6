"""The server's JSON response: the bytes Starlette's own renders, from one shared encoder."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, strategies as st
from starlette.responses import JSONResponse as StarletteJSON

from tests.strategies import json_values
from virtrio.engine.server._http import JSONResponse

FLOATS = st.floats(allow_nan=False, allow_infinity=False)
VALUES = json_values | FLOATS | st.lists(FLOATS) | st.dictionaries(st.text(), FLOATS)


@given(VALUES)
def test_it_renders_what_starlette_renders(value: Any) -> None:
    assert JSONResponse(value).body == StarletteJSON(value).body
    assert JSONResponse(value).headers == StarletteJSON(value).headers


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_it_refuses_what_starlette_refuses(bad: float) -> None:
    for response in (JSONResponse, StarletteJSON):
        with pytest.raises(ValueError, match="JSON compliant"):
            response({"x": bad})
