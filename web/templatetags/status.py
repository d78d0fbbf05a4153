"""`{% load status %}`: a resource's status as `environments.display` decides it, for every page.

    {% with s=resource|display %}{% include "components/status.html" %}{% endwith %}
"""

from __future__ import annotations

from django import template
from django.utils.safestring import mark_safe

from environments.display import Display, display_state

from ..pipeline_cells import status_detail as _status_detail

register = template.Library()


@register.filter
def display(resource) -> Display:
    """No query: the resource's own fields and what `selectors.with_status` annotated."""
    return display_state(resource)


@register.filter
def status_detail(s: Display) -> str:
    """The detail's markup (wraps; a long one folds): the same as in every pipeline cell."""
    return mark_safe(_status_detail(s))
