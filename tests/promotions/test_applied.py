"""Markers of Hoist's own writes (promotions.applied): what tells them from anyone else's."""

from promotions import applied


def test_deployments_and_ingresses_are_marked_by_generation_the_rest_by_resource_version():
    meta = {"metadata": {"generation": 3, "resourceVersion": "812"}}
    assert applied.marker("Deployment", meta) == "g3"
    assert applied.marker("Ingress", meta) == "g3"
    assert applied.marker("Service", meta) == "rv812"
    assert applied.marker("ImageSource", meta) == "rv812"
    assert applied.marker("Secret", {"metadata": {}}) == ""
    assert applied.marker("Secret", None) == ""


def test_a_later_write_is_someone_elses_an_earlier_one_is_a_lagging_event():
    assert applied.compare("g3", "g3") == applied.SAME
    assert applied.compare("g4", "g3") == applied.OTHER
    assert applied.compare("g2", "g3") == applied.STALE
    assert applied.compare("rv900", "rv812") == applied.OTHER
    assert applied.compare("rv800", "rv812") == applied.STALE
    assert applied.compare("rv10", "rv9") == applied.OTHER  # numbers, not strings


def test_opaque_versions_and_missing_records_are_handled_without_guessing():
    assert applied.compare("rvabc", "rvabd") == applied.OTHER  # not integers: any difference is a write
    assert applied.compare("rv5", "g5") == applied.OTHER
    assert applied.compare("g5", "") == applied.UNKNOWN  # nothing recorded (before Hoist kept records)
    assert applied.compare("", "g5") == applied.UNKNOWN
