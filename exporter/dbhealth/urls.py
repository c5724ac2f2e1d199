"""Include with `path("", include("dbhealth.urls"))` or under a prefix of the host project."""

from django.urls import path

from dbhealth.serving import views

app_name = "dbhealth"

urlpatterns = [
    path("", views.status, name="status"),
    path("metrics", views.metrics, name="metrics"),
    path("probe", views.probe, name="probe"),
    path("healthz", views.healthz, name="healthz"),
    path("sd", views.service_discovery, name="sd"),
    path("livez", views.livez, name="livez"),
    path("readyz", views.readyz, name="readyz"),
    path("-/reload", views.reload_config, name="reload"),
]
