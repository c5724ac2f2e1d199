"""Every dashboard fits Grafana's published dashboard schema, checked by the TypeScript compiler.

Grafana publishes its dashboard model as TypeScript types (npm `@grafana/schema`), not as a JSON
schema. Each dashboard is written out as an object literal that `satisfies` those types and
`tsc --strict` compiles them all in one run: a misspelt key anywhere is an excess-property error,
a wrong value a type error. The schema is pinned to the Grafana version the files declare.
"""

import fcntl
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from dbhealth.generators.dashboards import GRAFANA_VERSION, DashboardAlias, build_dashboards

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "dashboards"
TOOLS = ROOT / ".cache" / "grafana-schema"
# The latest @grafana/schema of the Grafana minor the dashboards declare (GRAFANA_VERSION); later
# majors no longer publish the Prometheus query type.
SCHEMA_PACKAGE = "@grafana/schema"
SCHEMA_VERSION = "10.4.19"
TYPESCRIPT_VERSION = "5.9.3"

# Odd alias sets whose dashboards the example config does not produce.
ODD_SETS = {
    "sqlite-only": [DashboardAlias("only.sqlite", "sqlite", replica=False)],
    "replica": [DashboardAlias('Replica "eu"/1', "postgresql", replica=True)],
    "mysql": [DashboardAlias("legacy-db ß", "mysql", replica=False)],
    "mysql-replica": [DashboardAlias("legacy_replica", "mysql", replica=True)],
}

COMPOSABLE = "@grafana/schema/dist/esm/raw/composable"
# Grafana's model, narrowed to what dbhealth's dashboards contain: Prometheus targets and the
# option and field-config types of the four panel plugins used. Everything else is Grafana's.
SCHEMA_TS = f"""\
import type {{
  AnnotationQuery, Dashboard, FieldConfig, FieldConfigSource, Panel, RowPanel,
}} from "@grafana/schema";
import type {{
  PrometheusDataQuery,
}} from "{COMPOSABLE}/prometheus/dataquery/x/PrometheusDataQuery_types.gen";
import type * as stat from "{COMPOSABLE}/stat/panelcfg/x/StatPanelCfg_types.gen";
import type * as table from "{COMPOSABLE}/table/panelcfg/x/TablePanelCfg_types.gen";
import type * as timeline from
  "{COMPOSABLE}/statetimeline/panelcfg/x/StateTimelinePanelCfg_types.gen";
import type * as timeseries from "{COMPOSABLE}/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen";

/** JSON holds an enum member as its value: every enum type becomes the union of its values. */
type AsJson<T> = T extends string
  ? `${{T}}`
  : T extends readonly (infer Item)[]
    ? AsJson<Item>[]
    : T extends object
      ? {{ [K in keyof T]: AsJson<T[K]> }}
      : T;

/** The veneer adds `& Record<string, unknown>` to `custom`; the plugin's type alone is exact. */
type Fields<Custom> = Omit<FieldConfigSource, "defaults"> & {{
  defaults: Omit<FieldConfig, "custom"> & {{ custom?: Custom }};
}};

type PluginPanel<Kind extends string, Options, Custom> = Omit<
  Panel,
  "type" | "options" | "fieldConfig" | "targets"
> & {{
  type: Kind;
  options?: Options;
  fieldConfig?: Fields<Custom>;
  targets?: PrometheusDataQuery[];
}};

/**
 * What the Prometheus datasource reads from the annotation itself, beside its `target`; the
 * dashboard schema leaves datasource-specific annotation fields out, Grafana keeps them.
 */
interface PrometheusAnnotation {{
  titleFormat?: string;
  textFormat?: string;
  tagKeys?: string;
  useValueForTime?: boolean;
}}

type DbhealthPanel =
  | PluginPanel<"stat", stat.Options, never>
  | PluginPanel<"table", table.Options, table.FieldConfig>
  | PluginPanel<"state-timeline", timeline.Options, timeline.FieldConfig>
  | PluginPanel<"timeseries", timeseries.Options, timeseries.FieldConfig>;

export type DbhealthDashboard = AsJson<
  Omit<Dashboard, "panels" | "annotations"> & {{
    panels?: (RowPanel | DbhealthPanel)[];
    annotations?: {{ list?: (AnnotationQuery<PrometheusDataQuery> & PrometheusAnnotation)[] }};
  }}
>;
"""

# `__inputs`, `__requires` and `__elements` are import metadata that Grafana's import screen reads
# and strips; they lie outside the dashboard model, so the schema does not describe them.
IMPORT_METADATA = ("__inputs", "__requires", "__elements")

ERROR = re.compile(r"^(?P<file>[^(\s]+\.ts)\(\d+,\d+\): error TS\d+: ", re.MULTILINE)


def dashboard_ts(dashboard: dict) -> str:
    model = {key: value for key, value in dashboard.items() if key not in IMPORT_METADATA}
    return (
        'import type { DbhealthDashboard } from "./schema";\n\n'
        f"export const dashboard = {json.dumps(model, indent=2)} satisfies DbhealthDashboard;\n"
    )


def checked_dashboards() -> dict[str, dict]:
    """Every committed file and every file generated for the odd alias sets, by check name."""
    found = {
        f"committed/{path.name}": json.loads(path.read_text())
        for path in sorted(COMMITTED.glob("*.json"))
    }
    for set_name, aliases in ODD_SETS.items():
        for file_name, dashboard in build_dashboards(aliases).items():
            found[f"{set_name}/{file_name}"] = dashboard
    return found


def misspellings() -> dict[str, dict]:
    """Dashboards with one misspelt key each, at every nesting level the narrowed types cover."""
    base = build_dashboards([DashboardAlias("a", "postgresql", replica=False)])["overview.json"]
    edits = {
        "units": lambda d, p: p["timeseries"]["fieldConfig"]["defaults"],
        "lineWidht": lambda d, p: p["timeseries"]["fieldConfig"]["defaults"]["custom"],
        "cellHieght": lambda d, p: p["table"]["options"],
        "palcement": lambda d, p: p["timeseries"]["options"]["legend"],
        "legendFromat": lambda d, p: p["timeseries"]["targets"][0],
        "colourMode": lambda d, p: p["stat"]["options"],
        "mergeValue": lambda d, p: p["state-timeline"]["options"],
        "colapsed": lambda d, p: p["row"],
        "fixedColour": lambda d, p: p["timeseries"]["fieldConfig"]["defaults"]["color"],
        "lable": lambda d, p: d["templating"]["list"][0],
        "iconColour": lambda d, p: d["annotations"]["list"][0],
        "timepickr": lambda d, p: d,
    }
    cases = {}
    for key, place in edits.items():
        dashboard = json.loads(json.dumps(base))
        panels = {panel["type"]: panel for panel in dashboard["panels"]}
        place(dashboard, panels)[key] = "x"
        cases[f"misspelt/{key}"] = dashboard
    return cases


def installed_version(package: str) -> str | None:
    manifest = TOOLS / "node_modules" / package / "package.json"
    return json.loads(manifest.read_text())["version"] if manifest.exists() else None


@pytest.fixture(scope="session")
def tsc() -> list[str]:
    """The pinned compiler beside the pinned schema, installed into .cache/ when missing."""
    pinned = {SCHEMA_PACKAGE: SCHEMA_VERSION, "typescript": TYPESCRIPT_VERSION}
    node, npm = shutil.which("node"), shutil.which("npm")
    if not (node and npm):
        pytest.fail("the dashboard schema check needs node and npm: run scripts/setup --test")
    TOOLS.mkdir(parents=True, exist_ok=True)
    with (TOOLS / ".lock").open("w") as lock:
        # Parallel sessions must not run npm into the same directory at once.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if any(installed_version(name) != version for name, version in pinned.items()):
            subprocess.run(
                [
                    npm,
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--prefix",
                    str(TOOLS),
                    *(f"{name}@{version}" for name, version in pinned.items()),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
    return [node, str(TOOLS / "node_modules" / "typescript" / "bin" / "tsc")]


@pytest.fixture(scope="session")
def errors_by_file(tsc: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One tsc run over every checked dashboard and every misspelt one: its errors by file."""
    work = tmp_path_factory.mktemp("dashboard-schema")
    (work / "node_modules").symlink_to(TOOLS / "node_modules")
    (work / "schema.ts").write_text(SCHEMA_TS)
    sources = {"schema.ts": "schema.ts"}
    cases = {**checked_dashboards(), **misspellings()}
    for index, (name, dashboard) in enumerate(cases.items()):
        source = f"dashboard{index}.ts"
        (work / source).write_text(dashboard_ts(dashboard))
        sources[source] = name
    result = subprocess.run(
        [
            *tsc,
            "--noEmit",
            "--strict",
            "--skipLibCheck",
            "--target",
            "es2022",
            "--module",
            "esnext",
            "--moduleResolution",
            "bundler",
            *sources,
        ],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )
    found: dict[str, str] = {name: "" for name in sources.values()}
    starts = list(ERROR.finditer(result.stdout))
    for start, end in zip(starts, [*starts[1:], None], strict=True):
        text = result.stdout[start.start() : end.start() if end else None]
        found[sources[start["file"]]] += text
    assert result.returncode == 0 or starts, result.stdout + result.stderr
    return found


def test_schema_is_the_one_of_the_declared_grafana_version() -> None:
    assert SCHEMA_VERSION.split(".")[:2] == GRAFANA_VERSION.split(".")[:2]


def test_narrowed_types_compile(errors_by_file: dict[str, str]) -> None:
    assert errors_by_file["schema.ts"] == ""


@pytest.mark.parametrize("name", sorted(checked_dashboards()))
def test_dashboard_satisfies_the_schema(errors_by_file: dict[str, str], name: str) -> None:
    assert errors_by_file[name] == ""


@pytest.mark.parametrize("name", sorted(misspellings()))
def test_a_misspelt_key_fails(errors_by_file: dict[str, str], name: str) -> None:
    key = name.removeprefix("misspelt/")
    assert f"""'"{key}"' does not exist""" in errors_by_file[name], errors_by_file[name]
