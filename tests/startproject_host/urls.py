"""startproject's admin, the shop's pages, django-prometheus's /metrics, and dbhealth under a
prefix of the host's choosing."""

from django.contrib import admin
from django.urls import include, path

from tests.startproject_host.shop import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("products", views.products),
    path("broken", views.broken),
    path("", include("django_prometheus.urls")),
    path("dbhealth/", include("dbhealth.urls")),
]
