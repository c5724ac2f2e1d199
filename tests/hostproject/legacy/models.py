from django.db import models


class LegacyCustomer(models.Model):
    """A table of the legacy system that Django only reads and writes."""

    customer_id = models.AutoField(primary_key=True)
    customer_name = models.CharField(max_length=100)
    customer_email = models.CharField(max_length=100)
    created_date = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "customers"
