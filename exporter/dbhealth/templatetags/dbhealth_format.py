"""Display of probe figures for people: durations in the unit a reader expects."""

from django import template

register = template.Library()


@register.filter
def duration(seconds: float | None) -> str:
    """12.3 ms, 4.56 s, 7 min, 2.5 h; an em dash when there is nothing to show."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
