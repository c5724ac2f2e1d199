"""The sample host as a production site runs it: what such a site adds around the exporter.

- a site-wide cache (UpdateCacheMiddleware / FetchFromCacheMiddleware, 30 s) over every page;
- django-prometheus for its own requests (their families are in the process's default registry,
  which the host exports itself);
- a second read replica, blog reads spread over both by a load-balancing router;
- a token for dbhealth's endpoints, which the exporter's views enforce: the host's middleware
  knows nothing of it.
"""

from tests.hostproject.settings import *  # noqa: F403
from tests.hostproject.settings import DATABASE_ROUTERS, DATABASES, INSTALLED_APPS, MIDDLEWARE

INSTALLED_APPS = ["django_prometheus", *INSTALLED_APPS]
MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.cache.UpdateCacheMiddleware",
    *MIDDLEWARE,
    "django.middleware.cache.FetchFromCacheMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
CACHE_MIDDLEWARE_SECONDS = 30

DATABASES = {**DATABASES, "read_replica_2": dict(DATABASES["read_replica"])}
DATABASE_ROUTERS = ["tests.hostproject.routers.PinningReplicaRouter", *DATABASE_ROUTERS]

DBHEALTH_AUTH_TOKEN = "hostproject-scrape-token"
