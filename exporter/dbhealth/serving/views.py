"""Thin HTTP handlers: read the request, ask the probe service for state, render it.

Every view is wrapped by `endpoint`, so the same rules hold wherever the URLs are included: in
the dbhealth service or under a prefix of a host project, whatever the host's middleware.
"""

import time
from collections.abc import Mapping

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST, require_safe
from prometheus_client import REGISTRY

from dbhealth.configuration.targets import load_targets, target_by_alias
from dbhealth.exposition.encoding import encode
from dbhealth.exposition.families import StateCollector
from dbhealth.exposition.health_rows import build_report
from dbhealth.exposition.project_families import ProjectCollector
from dbhealth.probing.service import current_state, rendering_cost
from dbhealth.serving import reload, web_config
from dbhealth.serving.auth import View, token_required
from dbhealth.serving.scrape_budget import budget_from_headers

MAX_ALIAS_PARAMETER = 200
STATUS_REFRESH_SECONDS = 15


class FamilyList:
    """Families already built, as a collector (not exposition.families: that builds them)."""

    def __init__(self, families) -> None:
        self.families = families

    def collect(self):
        yield from self.families


class Combined:
    """Several collectors rendered as one exposition (one `# EOF` for OpenMetrics)."""

    def __init__(self, *sources) -> None:
        self.sources = sources

    def collect(self):
        for source in self.sources:
            yield from source.collect()


def endpoint(view: View) -> View:
    """GET and HEAD only; the token when one is configured; never cached, by anyone: a host's
    site-wide cache middleware would otherwise serve a stopped database as up for its timeout.
    never_cache is outermost so that 401 and 405 answers are not cached either."""
    return never_cache(token_required(require_safe(view)))


def open_endpoint(view: View) -> View:
    """GET and HEAD, never cached, no token: for answers that carry nothing about databases."""
    return never_cache(require_safe(view))


def exposition(headers: Mapping[str, str], registry: Combined, aliases: int = 0) -> HttpResponse:
    """The encoded answer; its cost per alias is learnt so that scrapes keep time for it."""
    started = time.monotonic()
    body, content_type = encode(registry, headers.get("Accept", ""))
    rendering_cost.note(aliases, time.monotonic() - started)
    return HttpResponse(body, content_type=content_type)


@endpoint
def metrics(request: HttpRequest) -> HttpResponse:
    return metrics_response(request.headers)


@endpoint
def probe(request: HttpRequest) -> HttpResponse:
    return probe_response(request.GET, request.headers)


def metrics_response(headers: Mapping[str, str]) -> HttpResponse:
    """The answer of /metrics, for the view and for the service's ASGI scrape path alike
    (serving/scrape_path.py), so both answer the same.

    dbhealth's families; the process's default registry (process_*, python_*, django_http_*)
    only when dbhealth is a process of its own. Embedded, that registry is the host's, which the
    host exports itself: re-exported here, every series of it would exist twice."""
    targets, state = current_state(budget=budget_from_headers(headers))
    sources = [StateCollector(targets, state), ProjectCollector(targets, state)]
    reloads = []
    if reload.config_file() is not None:
        reloads += reload.status.families()
    live = web_config.active()
    if live is not None:
        reloads += live.outcome.families()
    if reloads:
        sources.append(FamilyList(reloads))
    if getattr(settings, "DBHEALTH_EXPORT_PROCESS_METRICS", False):
        sources.append(REGISTRY)
    return exposition(headers, Combined(*sources), aliases=len(targets))


def probe_response(query: QueryDict, headers: Mapping[str, str]) -> HttpResponse:
    """The answer of /probe?alias=..., for the view and the ASGI scrape path alike."""
    aliases = query.getlist("alias")
    if len(aliases) != 1 or not aliases[0] or len(aliases[0]) > MAX_ALIAS_PARAMETER:
        return plain_error(
            "exactly one alias parameter is required, e.g. /probe?alias=default", 400
        )
    target = target_by_alias(aliases[0])
    if target is None:
        return plain_error("unknown alias: not among the configured databases", 404)
    targets, state = current_state([target.alias], budget_from_headers(headers))
    return exposition(
        headers,
        Combined(
            StateCollector(targets, state),
            ProjectCollector(targets, state, only_alias=target.alias),
        ),
        aliases=len(targets),
    )


@endpoint
def healthz(request: HttpRequest) -> JsonResponse:
    targets, state = current_state(budget=budget_from_headers(request.headers))
    report = build_report(targets, state)
    response = JsonResponse(report.as_dict(), status=200 if report.healthy else 503)
    # A 503 here is the answer asked for, not a server error: Django would log it on
    # django.request at ERROR, which a host's AdminEmailHandler mails to ADMINS (DEBUG off) on
    # every health check while a database is down. Django skips responses marked logged.
    response._has_been_logged = True
    return response


@endpoint
def status(request: HttpRequest) -> HttpResponse:
    targets, state = current_state(budget=budget_from_headers(request.headers))
    report = build_report(targets, state)
    return render(
        request,
        "dbhealth/status.html",
        {"report": report, "refresh_seconds": STATUS_REFRESH_SECONDS},
    )


@endpoint
def service_discovery(request: HttpRequest) -> JsonResponse:
    """Prometheus HTTP SD: one /probe target per alias, on the address the client used."""
    address = request.get_host()
    probe_path = reverse("dbhealth:probe")
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


@csrf_exempt
@never_cache
@require_POST
@token_required
def reload_config(request: HttpRequest) -> HttpResponse:
    """POST /-/reload, like Prometheus's: off unless DBHEALTH_RELOAD_ENDPOINT is on (a reload
    is also a way to make the service re-read files), and behind the token when one is set."""
    if not getattr(settings, "DBHEALTH_RELOAD_ENDPOINT", False):
        return plain_error("the reload endpoint is off (DBHEALTH_RELOAD_ENDPOINT)", 404)
    try:
        reload.reload_configuration()
    except reload.ReloadUnavailable as exc:
        return plain_error(str(exc), 409)
    except ImproperlyConfigured as exc:
        return plain_error(f"configuration not reloaded: {exc}", 500)
    return HttpResponse("reloaded\n", content_type="text/plain; charset=utf-8")


@open_endpoint
def livez(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers. Never probes, never fails for a database: a liveness
    probe that failed during a database outage would restart the exporter when it is needed."""
    return HttpResponse("ok\n", content_type="text/plain; charset=utf-8")


@open_endpoint
def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: the configuration is loaded (every alias known, broken ones included). Cheap:
    it reads no database."""
    targets = load_targets()
    body = f"ok: {len(targets)} aliases configured\n"
    return HttpResponse(body, content_type="text/plain; charset=utf-8")


def plain_error(message: str, status: int) -> HttpResponse:
    return HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")
