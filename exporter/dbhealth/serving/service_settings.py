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
