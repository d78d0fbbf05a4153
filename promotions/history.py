"""The promotion history's filters and its CSV: one FilterSet serves the page, the CSV export and the API.

What caused a promotion and how long it took for that cause are the model's
(`Promotion.cause`, `Promotion.duration`, `PromotionQuerySet.with_cause`); this module
only narrows a history down and writes it out.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import django_filters
from django import forms
from django.db.models import Q
from django.http import QueryDict
from django_filters.fields import IsoDateTimeField

from environments.models import Environment, Resource
from projects.models import Membership

from .models import Cause, Duration, Promotion, PromotionQuerySet

# The filters the history page shows (and carries from page to page, and into its CSV link);
# the API also takes `reason`, `queued_after` and `queued_before`.
PAGE_FILTERS = ("environment", "resource", "cause", "status", "who", "date_from", "date_to")

# Who did it when it wasn't a person: the start of the labels Hoist records (`Promotion.actor_label`).
ACTOR_LABELS = ("Hoist", "registry webhook", "tag watch", "drift repair", "rollback")


class UTCDateTimeField(IsoDateTimeField):
    """ISO 8601, normalised to UTC here (a database may refuse odd offsets such as +17:01)."""

    def to_python(self, value):
        parsed = super().to_python(value)
        if parsed is not None and parsed.tzinfo is not None:
            try:
                parsed = parsed.astimezone(datetime.timezone.utc)
            except OverflowError:
                raise forms.ValidationError("Date out of range.", code="invalid") from None
        return parsed


class UTCDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UTCDateTimeField


class HistoryForm(forms.Form):
    """Checks what a filter can't check alone: the names belong to the project, and From ≤ To."""

    project = None  # set per request by PromotionFilter.get_form_class

    def clean_environment(self):
        slug = self.cleaned_data.get("environment")
        if slug and not Environment.objects.filter(project=self.project, slug=slug).exists():
            raise forms.ValidationError(f"No environment “{slug[:63]}” in this project.")
        return slug

    def clean_resource(self):
        name = self.cleaned_data.get("resource")
        if name and not Resource.objects.filter(environment__project=self.project, name=name).exists():
            raise forms.ValidationError(f"No resource “{name[:63]}” in this project.")
        return name

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", f"“To” ({end:%Y-%m-%d}) is before “From” ({start:%Y-%m-%d}).")
        return cleaned


class PromotionFilter(django_filters.FilterSet):
    """A project's promotion history, narrowed down. Invalid input is a form error on its field
    (the page shows it next to the field, the API answers 400) and filters out everything."""

    environment = django_filters.CharFilter(field_name="resource__environment__slug", max_length=63,
                                            help_text="Environment slug.")
    resource = django_filters.CharFilter(field_name="resource__name", max_length=63,
                                         help_text="Resource name (in every environment unless `environment` is given).")
    cause = django_filters.MultipleChoiceFilter(
        choices=Cause.choices, method="filter_cause",
        help_text="What caused it: the reason, or `approval` for a change applied after its approvals. Repeatable.")
    status = django_filters.MultipleChoiceFilter(choices=Promotion.Status.choices, help_text="Repeatable.")
    who = django_filters.CharFilter(
        method="filter_who", max_length=200,
        help_text="A user name (exact, any case), or the start of what Hoist records when no person asked: "
                  "`Hoist`, `registry webhook`, `tag watch`, `drift repair`, `rollback`.")
    date_from = django_filters.DateFilter(method="filter_date_from",
                                          help_text="Queued on or after this day (YYYY-MM-DD, UTC).")
    date_to = django_filters.DateFilter(method="filter_date_to",
                                        help_text="Queued on or before this day (YYYY-MM-DD, UTC).")
    reason = django_filters.MultipleChoiceFilter(
        choices=Promotion.Reason.choices,
        help_text="The reason the change was made with (an approved change keeps its own). Repeatable.")
    queued_after = UTCDateTimeFilter(field_name="queued_at", lookup_expr="gte", help_text="ISO 8601 date-time.")
    queued_before = UTCDateTimeFilter(field_name="queued_at", lookup_expr="lt", help_text="ISO 8601 date-time.")

    class Meta:
        model = Promotion
        form = HistoryForm
        fields = [*PAGE_FILTERS, "reason", "queued_after", "queued_before"]

    def __init__(self, data=None, queryset=None, *, project, request=None, prefix=None):
        self.project = project
        super().__init__(_given(data), queryset, request=request, prefix=prefix)

    def get_form_class(self):
        form = super().get_form_class()
        return type(form.__name__, (form,), {"project": self.project})

    def filter_queryset(self, queryset):
        if self.form.errors:
            return queryset.none()  # never a history that looks filtered but isn't
        return super().filter_queryset(queryset)

    def filter_cause(self, queryset: PromotionQuerySet, name, value):
        if "annotated_cause" not in queryset.query.annotations:
            queryset = queryset.with_cause()
        return queryset.filter(annotated_cause__in=value)

    # Days as bounds on queued_at itself (its index serves them), not a cast of every row to a date.
    def filter_date_from(self, queryset, name, value):
        return queryset.filter(queued_at__gte=_start_of(value))

    def filter_date_to(self, queryset, name, value):
        if value == datetime.date.max:
            return queryset
        return queryset.filter(queued_at__lt=_start_of(value + datetime.timedelta(days=1)))

    def filter_who(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        match = Q(actor__username__iexact=value) | Q(actor__isnull=True, actor_label__istartswith=value)
        if value.lower() == "hoist":
            match |= Q(actor__isnull=True, actor_label="")  # recorded with no label: shown as Hoist
        return queryset.filter(match)

    def query(self) -> QueryDict:
        """The page's filters as given (empty ones left out), for its page links and its CSV link."""
        query = QueryDict(mutable=True)
        for name in PAGE_FILTERS:
            if self.is_bound and name in self.data:
                query.setlist(name, self.data.getlist(name))
        return query


def _start_of(day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time.min, tzinfo=datetime.timezone.utc)


def _given(data):
    """Without the empty values a form sends for "any" (`status=`): an empty choice is no filter, not a bad one."""
    if not isinstance(data, QueryDict):
        return data
    given = QueryDict(mutable=True)
    for name in data:
        values = [value for value in data.getlist(name) if value != ""]
        if values:
            given.setlist(name, values)
    return given


def page_data(params: QueryDict) -> QueryDict:
    """The history page's own filters out of a request's parameters (the API-only ones and
    anything else left out: a filter the form doesn't show must not narrow the page)."""
    data = QueryDict(mutable=True)
    for name in PAGE_FILTERS:
        if name in params:
            data.setlist(name, params.getlist(name))
    return data


def filter_choices(project) -> dict:
    """What the page's filter form offers (three small queries: only the page asks)."""
    return {
        "environments": list(Environment.objects.filter(project=project).values_list("slug", "name")),
        "resources": sorted(set(Resource.objects.filter(environment__project=project).values_list("name", flat=True))),
        "causes": Cause.choices,
        "statuses": Promotion.Status.choices,
        "people": [*Membership.objects.filter(project=project).order_by("user__username")
                   .values_list("user__username", flat=True), *ACTOR_LABELS],
    }


# --- CSV --------------------------------------------------------------------------------------

CSV_HEADER = ["queued_at", "environment", "resource", "cause", "who", "from_digest", "to_digest", "status", "error",
              "duration_from", "applied_seconds", "healthy_seconds", "applied_at", "healthy_at"]

# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value) -> str:
    """A value as a CSV cell that a spreadsheet shows as text: a leading apostrophe stops a
    formula (an error message or a label can start with `=`, `+`, `-` or `@`)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_rows(promotions: PromotionQuerySet) -> Iterator[list[str]]:
    """The header, then one row per promotion (read in chunks: a long history is streamed)."""
    yield CSV_HEADER
    for p in promotions.iterator(chunk_size=500):
        duration: Duration = p.duration
        yield [csv_cell(value) for value in (
            p.queued_at, p.resource.environment.slug, p.resource.name, p.cause, p.who, p.from_digest, p.to_digest,
            p.status, p.error, duration.start, duration.applied_s, duration.healthy_s, p.applied_at, p.healthy_at,
        )]
