"""URLs of the dbhealth service: the exporter's endpoints at the root."""

from django.urls import include, path

urlpatterns = [path("", include("dbhealth.urls"))]
