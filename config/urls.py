"""URLs of the standalone service: the exporter's endpoints at the root."""

from exporter.service_urls import urlpatterns

__all__ = ["urlpatterns"]
