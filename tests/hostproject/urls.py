"""The host's own URLs, with the exporter under a prefix of its choosing."""

from django.http import HttpResponse
from django.urls import include, path

urlpatterns = [
    path("", lambda request: HttpResponse("the host project's home page\n")),
    path("dbhealth/", include("dbhealth.urls")),
]
