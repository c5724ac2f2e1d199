"""`manage.py check` reports every alias that cannot be probed, with the same words as /healthz.

Untagged on purpose: checks tagged `database` run only with --database.
"""

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from dbhealth.configuration.targets import load_targets
from dbhealth.serving.auth import configured_token
from dbhealth.serving.web_config import configured_web_config


@checks.register()
def check_targets(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    messages: list[checks.CheckMessage] = []
    try:
        targets = load_targets()
    except Exception as exc:
        return [checks.Error(f"dbhealth cannot read its configuration: {exc}", id="dbhealth.E001")]
    if not targets:
        messages.append(
            checks.Warning(
                "dbhealth has no database aliases to probe",
                hint="Configure DATABASES, DBHEALTH_CONFIG or DBHEALTH_ALIASES.",
                id="dbhealth.W001",
            )
        )
    for target in targets:
        if target.problem is not None:
            messages.append(
                checks.Error(
                    f"database alias {target.alias!r}: {target.problem}",
                    hint="The alias is reported down with reason 'config' until this is fixed.",
                    id="dbhealth.E002",
                )
            )
    return messages


@checks.register()
def check_auth_token(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """The endpoint token file is read at start-up; say what will stop the server first."""
    try:
        configured_token()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="dbhealth.E003")]
    return []


@checks.register()
def check_web_config(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """DBHEALTH_WEB_CONFIG_FILE (TLS, basic auth users) is read when `serve` starts: the same
    problem that would stop it, and what a Go exporter would honour differently."""
    try:
        web = configured_web_config()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="dbhealth.E004")]
    if web is None:
        return []
    return [
        checks.Warning(f"DBHEALTH_WEB_CONFIG_FILE {web.path}: {note}", id="dbhealth.W002")
        for note in web.notes
    ]
