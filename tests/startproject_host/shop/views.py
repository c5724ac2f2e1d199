"""The shop's pages: a list read from the replica, as the code chooses, and a page with a bug."""

from django.http import HttpRequest, JsonResponse

from tests.startproject_host.shop.models import Product


def products(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"products": Product.objects.using("replica").count()})


def broken(request: HttpRequest) -> JsonResponse:
    """A real server error, which Django mails to ADMINS: the tests' proof that mail works."""
    raise RuntimeError("the shop's own bug")
