"""The relative times pages show: never "0 minutes ago" on a page that refreshes every few seconds."""
from datetime import timedelta

from django.template import Context, Template
from django.utils import timezone

from web.templatetags.hoist import ago, seconds, since


def test_ago_reads_seconds_minutes_hours_days():
    now = timezone.now()
    assert ago(now) == "just now"
    assert ago(now + timedelta(seconds=30)) == "just now"  # another process's clock a little ahead
    assert ago(now - timedelta(seconds=12)) == "12 s ago"
    assert ago(now - timedelta(minutes=5, seconds=20)) == "5 min ago"
    assert ago(now - timedelta(hours=3)) == "3 h ago"
    assert ago(now - timedelta(days=1)) == "24 h ago"
    assert ago(now - timedelta(days=4)) == "4 days ago"
    assert ago(None) == "" and ago("") == ""


def test_since_and_seconds():
    assert since(timezone.now() - timedelta(minutes=2)) == "2 min"
    assert since(None) == ""
    assert [seconds(v) for v in (0.44, 9.96, 12.4, 200, 120, 7500, 7200)] == [
        "0.4 s", "10.0 s", "12 s", "3 min 20 s", "2 min", "2 h 5 min", "2 h"]
    assert seconds(None) == ""


def test_filters_are_builtins():
    out = Template("{{ t|ago }}").render(Context({"t": timezone.now() - timedelta(seconds=42)}))
    assert out == "42 s ago"
