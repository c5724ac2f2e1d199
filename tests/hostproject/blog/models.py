from django.db import models


class Post(models.Model):
    """Its author lives in another database, so the reference is a plain id."""

    title = models.CharField(max_length=200)
    slug = models.SlugField(max_length=200, default="")
    content = models.TextField()
    author_id = models.IntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
