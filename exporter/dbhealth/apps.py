"""The exporter app; it installs no models and needs no migrations."""

from django.apps import AppConfig


class ExporterConfig(AppConfig):
    name = "dbhealth"
    verbose_name = "dbhealth exporter"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.signals import setting_changed

        from dbhealth.configuration import system_checks  # noqa: F401  (register the system checks)
        from dbhealth.probing.service import forget_configuration
        from dbhealth.project import database_checks  # noqa: F401

        setting_changed.connect(forget_configuration, dispatch_uid="dbhealth-settings")
