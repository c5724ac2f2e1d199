from django.db import models


class AnalyticsEvent(models.Model):
    event_type = models.CharField(max_length=50)
    user_id = models.IntegerField(null=True, blank=True)
    timestamp = models.DateTimeField(auto_now_add=True)
    data = models.JSONField(default=dict)


class DailySummary(models.Model):
    """A table the data team is supposed to create; nothing here creates it."""

    day = models.DateField(primary_key=True)
    events = models.IntegerField()

    class Meta:
        managed = False
        db_table = "analytics_daily_summary"
