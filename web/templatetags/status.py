"""`{% load status %}`: a resource's status as `environments.display` decides it, for every page.

    {% with s=resource|display %}{% include "components/status.html" %}{% endwith %}
"""

from __future__ import annotations

from django import template

from environments.display import Display, display_state

register = template.Library()


@register.filter
def display(resource) -> Display:
    """No query: the resource's own fields and what `selectors.with_status` annotated."""
    return display_state(resource)
