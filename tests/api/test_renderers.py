"""core.api.renderers.JSONRenderer writes DRF's JSONRenderer's bytes, or lets it write them."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta, timezone as dt_timezone
from decimal import Decimal

import pytest
from django.utils.translation import gettext_lazy
from rest_framework import renderers as drf
from rest_framework.utils.serializer_helpers import ReturnDict, ReturnList

from core.api.renderers import JSONRenderer

SAME = {
    "strings": {"plain": "web", "unicode": "ünïcødé \"quoted\" <b> \\ /", "controls": "a\nb\tc\x00\x1f\x7f",
                "separators": "line\u2028para\u2029end", "emoji": "🚀", "empty": ""},
    "numbers": [0, -1, 2**63 - 1, -(2**63), 2**64 - 1, True, False, None],
    "nested": {"list": [[], {}, [{"a": [1, {"b": None}]}]], "tuple": (1, "two")},
    "dates": [datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=dt_timezone.utc), datetime(2026, 3, 1, 12, 0),
              datetime(2026, 3, 1, 12, 0, tzinfo=dt_timezone(timedelta(hours=2))), date(2026, 3, 1), time(12, 30, 1, 500)],
    "others": [uuid.UUID(int=7), gettext_lazy("lazy"), timedelta(seconds=90), b"bytes"],
    "drf": ReturnDict({"rows": ReturnList([{"k": "v"}], serializer=None)}, serializer=None),
}
# orjson refuses these: DRF's renderer writes them.
FALLBACK = [{1: "int key", None: "null key"}, 2**70, {"deep": [2**64]}]


@pytest.mark.parametrize("data", [*SAME.values(), *FALLBACK, SAME], ids=[*SAME, "int keys", "big int", "big nested", "all"])
def test_it_writes_drfs_bytes(data):
    assert JSONRenderer().render(data) == drf.JSONRenderer().render(data)


def test_it_writes_nothing_for_none():
    assert JSONRenderer().render(None) == drf.JSONRenderer().render(None) == b""


def test_an_indent_asked_for_is_drfs():
    for media_type, context in (("application/json; indent=2", None), (None, {"indent": 4})):
        body = JSONRenderer().render(SAME, media_type, context)
        assert body == drf.JSONRenderer().render(SAME, media_type, context)
        assert b"\n  " in body


def test_what_drf_refuses_it_refuses():
    for data in ({"x": object()}, {"x": "\ud800"}):
        with pytest.raises((TypeError, ValueError)) as drfs:
            drf.JSONRenderer().render(data)
        with pytest.raises(drfs.type):
            JSONRenderer().render(data)
