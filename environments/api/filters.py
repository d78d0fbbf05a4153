import django_filters

from environments.models import Binding, Kind, Phase, Resource, SourceType


class ResourceFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=Kind.choices)
    source = django_filters.ChoiceFilter(field_name="source_type", choices=SourceType.choices, help_text="image or promote")
    binding = django_filters.ChoiceFilter(choices=Binding.choices)
    phase = django_filters.ChoiceFilter(choices=Phase.choices)

    class Meta:
        model = Resource
        fields = ["kind", "source", "binding", "phase"]
