"""`manage.py check` reports every alias that cannot be probed, with the same words as /healthz.

Embedded in a host project, these checks run in every one of the host's commands (`migrate`,
`makemigrations`, `test`, ...), where monitoring secrets are often absent (a migration job or CI
has no monitoring password, token or certificate). So what needs a secret or a server never
stops a command there:
- an alias that cannot be probed (its `password_env` unset, say) is a warning: `serve` reports it
  down with reason `config` and serves the others, so it is no reason to refuse anything; the
  same problem is an error (dbhealth.E002) for `check --deploy`, the gate run with production
  settings, where the secrets are;
- the token file and the web configuration file (TLS keys, user hashes) are checked only with
  `check --deploy`; `serve` itself refuses to start, with one line, when they are unusable.
Only dbhealth's own settings (an option that is not valid) are errors in every command.

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
                checks.Warning(
                    f"database alias {target.alias!r}: {target.problem}",
                    hint="The alias is reported down with reason 'config' until this is fixed.",
                    id="dbhealth.W003",
                )
            )
    return messages


@checks.register(deploy=True)
def check_targets_for_deploy(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """`check --deploy` runs with the settings and secrets of production: an alias that cannot
    be probed there would be down from the start."""
    try:
        targets = load_targets()
    except Exception:
        return []  # check_targets reports it (dbhealth.E001)
    return [
        checks.Error(
            f"database alias {target.alias!r}: {target.problem}",
            hint="The alias would be reported down with reason 'config'.",
            id="dbhealth.E002",
        )
        for target in targets
        if target.problem is not None
    ]


@checks.register(deploy=True)
def check_auth_token(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """The endpoint token file is read at start-up; say what will stop the server first."""
    try:
        configured_token()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="dbhealth.E003")]
    return []


@checks.register(deploy=True)
def check_web_config_file(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """DBHEALTH_WEB_CONFIG_FILE (TLS, basic auth users) is read when `serve` starts: the same
    problem that would stop it."""
    try:
        configured_web_config()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="dbhealth.E004")]
    return []


@checks.register()
def check_web_config(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """What a Go exporter would honour differently in a usable web configuration file (one that
    cannot be used, or is absent here, is check_web_config_file's)."""
    try:
        web = configured_web_config()
    except ImproperlyConfigured:
        return []
    if web is None:
        return []
    return [
        checks.Warning(f"DBHEALTH_WEB_CONFIG_FILE {web.path}: {note}", id="dbhealth.W002")
        for note in web.notes
    ]
