"""What the dbhealth service serves, whichever settings module it runs with.

The standalone settings (dbhealth.settings) use these, and `manage.py serve` applies them over a
host project's settings too, so the service answers with the exporter's own URLs and middleware.
"""

from importlib.util import find_spec

SERVICE_URLCONF = "dbhealth.serving.service_urls"

# django-prometheus (the `http-metrics` extra) adds the service's own django_http_* request
# metrics. Optional, because its releases cap Django (2.5.0: below 6.1) and a host project on a
# newer Django must still be able to install dbhealth.
HTTP_METRICS = find_spec("django_prometheus") is not None

SERVICE_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "dbhealth.serving.auth.EndpointAuthMiddleware",
]
if HTTP_METRICS:
    SERVICE_MIDDLEWARE = [
        "django_prometheus.middleware.PrometheusBeforeMiddleware",
        *SERVICE_MIDDLEWARE,
        "django_prometheus.middleware.PrometheusAfterMiddleware",
    ]

DEFAULT_BIND = "127.0.0.1:10433"

# uvicorn serves only `serve` (the `serve` extra): a host project may pin an older one for its own
# web server, and dbhealth must still install beside it. 0.47 brought Config's
# ssl_context_factory, through which the server hands uvicorn its TLS context.
SERVER_DISTRIBUTION = "uvicorn"
SERVER_MINIMUM = (0, 47)


def server_problem() -> str | None:
    """Why `serve` cannot run in this environment (one line naming what to install), or None."""
    from importlib.metadata import PackageNotFoundError, version

    minimum = ".".join(map(str, SERVER_MINIMUM))
    wanted = (
        f"`serve` needs {SERVER_DISTRIBUTION} {minimum} or later: pip install 'dbhealth[serve]'"
        f" (in a virtualenv of its own if the project pins an older {SERVER_DISTRIBUTION})"
    )
    try:
        installed = version(SERVER_DISTRIBUTION)
    except PackageNotFoundError:
        return f"{wanted}; {SERVER_DISTRIBUTION} is not installed"
    if release(installed) < SERVER_MINIMUM:
        return f"{wanted}; {SERVER_DISTRIBUTION} {installed} is installed"
    return None


def release(text: str) -> tuple[int, ...]:
    """The leading numbers of a version ("0.32.1" -> (0, 32, 1); "1.0rc1" -> (1, 0))."""
    numbers = []
    for part in text.split("."):
        digits = ""
        for character in part:
            if not character.isdigit():
                break
            digits += character
        if not digits:
            break
        numbers.append(int(digits))
        if len(digits) != len(part):
            break
    return tuple(numbers)
