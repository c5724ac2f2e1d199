"""Thin HTTP handlers: read the request, ask the runner for state, render it."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_safe
from prometheus_client import REGISTRY

from exporter.exposition import encode
from exporter.metrics import StateCollector
from exporter.project_metrics import ProjectCollector
from exporter.report import build_report
from exporter.probe_service import current_state
from exporter.scrape_budget import budget_from_headers
from exporter.targets import load_targets, target_by_alias

MAX_ALIAS_PARAMETER = 200
STATUS_REFRESH_SECONDS = 15


class Combined:
    """Several collectors rendered as one exposition (one `# EOF` for OpenMetrics)."""

    def __init__(self, *sources) -> None:
        self.sources = sources

    def collect(self):
        for source in self.sources:
            yield from source.collect()


def exposition(request: HttpRequest, registry: Combined) -> HttpResponse:
    body, content_type = encode(registry, request.headers.get("Accept", ""))
    return HttpResponse(body, content_type=content_type)


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    targets, state = current_state(budget=budget_from_headers(request.headers))
    return exposition(
        request,
        Combined(StateCollector(targets, state), ProjectCollector(targets, state), REGISTRY),
    )


@require_safe
def probe(request: HttpRequest) -> HttpResponse:
    aliases = request.GET.getlist("alias")
    if len(aliases) != 1 or not aliases[0] or len(aliases[0]) > MAX_ALIAS_PARAMETER:
        return plain_error(
            "exactly one alias parameter is required, e.g. /probe?alias=default", 400
        )
    target = target_by_alias(aliases[0])
    if target is None:
        return plain_error("unknown alias: not among the configured databases", 404)
    targets, state = current_state([target.alias], budget_from_headers(request.headers))
    return exposition(
        request,
        Combined(
            StateCollector(targets, state),
            ProjectCollector(targets, state, only_alias=target.alias),
        ),
    )


@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    targets, state = current_state(budget=budget_from_headers(request.headers))
    report = build_report(targets, state)
    return JsonResponse(report.as_dict(), status=200 if report.healthy else 503)


@require_safe
def status(request: HttpRequest) -> HttpResponse:
    targets, state = current_state(budget=budget_from_headers(request.headers))
    report = build_report(targets, state)
    return render(
        request,
        "exporter/status.html",
        {"report": report, "refresh_seconds": STATUS_REFRESH_SECONDS},
    )


@require_safe
def service_discovery(request: HttpRequest) -> JsonResponse:
    """Prometheus HTTP SD: one /probe target per alias, on the address the client used."""
    address = request.get_host()
    probe_path = reverse("exporter:probe")
    groups = [
        {
            "targets": [address],
            "labels": {
                "alias": target.alias,
                "vendor": target.vendor,
                "__metrics_path__": probe_path,
                "__param_alias": target.alias,
            },
        }
        for target in load_targets()
    ]
    return JsonResponse(groups, safe=False)


def plain_error(message: str, status: int) -> HttpResponse:
    return HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")
