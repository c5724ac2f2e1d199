"""What the dbhealth service serves, whichever settings module it runs with.

The standalone settings (dbhealth/settings.py) use these, and `manage.py serve` applies them over a
host project's settings too, so the service answers with the exporter's own URLs and middleware.
"""

SERVICE_URLCONF = "dbhealth.service_urls"

SERVICE_MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "dbhealth.middleware.EndpointAuthMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]
