"""Rendering metric families to the Prometheus text and OpenMetrics formats, fast.

prometheus_client escapes every character of every sample name in Python (OpenMetrics) and checks
every label name by regular expression, sample by sample: with 200 aliases and their top
statements that was half of a scrape's CPU. Families whose names are plain legacy names, with no
units, timestamps, exemplars or extra samples (all of dbhealth's own) need none of that, so they
are written here directly; any other family is handed to prometheus_client itself. That holds for
every name escaping that leaves plain names as they are: underscores and allow-utf-8 (what
Prometheus 2 and 3 ask for) in both formats, and values in the text format. Under the others
(dots doubles every underscore; OpenMetrics values prefixes every sample name with U__) the whole
exposition is prometheus_client's. Either way the body is byte for byte what prometheus_client
writes and the content type is its choose_encoder's (its tests check
both); the writer relies on prometheus_client's internals, hence the pin in pyproject.toml.
"""

import re
from collections.abc import Callable, Iterable, Sequence
from functools import partial

from prometheus_client import exposition as text_exposition
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics_exposition
from prometheus_client.openmetrics.exposition import ALLOWUTF8, UNDERSCORES, VALUES
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

# Legacy names less the colon, which OpenMetrics with underscores escaping turns into _ in sample
# names (not in # HELP and # TYPE). Reserved label names (__*) are refused where labels are checked.
PLAIN_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
OPENMETRICS_EOF = b"# EOF\n"
# The name escapings under which prometheus_client writes plain names, label names included, as
# they are. Label values and help texts are escaped alike under every one of them.
TEXT_ESCAPINGS = frozenset({UNDERSCORES, ALLOWUTF8, VALUES})
OPENMETRICS_ESCAPINGS = frozenset({UNDERSCORES, ALLOWUTF8})
# What choose_encoder binds: the escaping, and the OpenMetrics version, which only decides whether
# native histogram samples (never written here) are written.
ENCODER_KEYWORDS = frozenset({"escaping", "version"})


class LineFamily(Metric):
    """A gauge or counter family that keeps its samples as plain rows until it is written.

    prometheus_client's families build a Sample and a label dict for every sample, which the
    writer then checks again; for dbhealth's own families, whose names are plain by design, that
    was most of the work of a large scrape. `samples` still gives prometheus_client's own view, so
    any consumer of the collector protocol sees an ordinary family.
    """

    def __init__(self, name: str, documentation: str, typ: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, documentation, typ)
        if typ not in ("gauge", "counter") or not PLAIN_NAME.match(name):
            raise ValueError(f"{name}: only plainly named gauges and counters are written here")
        if any(label.startswith("__") or not PLAIN_NAME.match(label) for label in labels):
            raise ValueError(f"{name}: label names must be plain: {labels}")
        self.sample_name = f"{name}_total" if typ == "counter" else name
        self._labelnames = tuple(labels)
        # The exposition lists labels sorted by name.
        self._sorted = sorted(range(len(self._labelnames)), key=self._labelnames.__getitem__)
        self._rows: list[tuple[Sequence[str], float]] = []

    def add_metric(self, labels: Sequence[str], value: float) -> None:
        self._rows.append((labels, value))

    @property
    def samples(self) -> list[Sample]:
        return [
            Sample(self.sample_name, dict(zip(self._labelnames, labels, strict=True)), value)
            for labels, value in self._rows
        ]

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        # Metric.__init__ starts every family with an empty list; rows come from add_metric.
        if value:
            raise TypeError("LineFamily takes its samples through add_metric")

    def sample_lines(self) -> str:
        name = self.sample_name
        keys = [(self._labelnames[index], index) for index in self._sorted]
        lines = []
        for labels, value in self._rows:
            if keys:
                pairs = ",".join(f'{key}="{escape_value(labels[index])}"' for key, index in keys)
                lines.append(f"{name}{{{pairs}}} {floatToGoString(value)}\n")
            else:
                lines.append(f"{name} {floatToGoString(value)}\n")
        return "".join(lines)


class Single:
    """One family as a collector, for prometheus_client's own encoders."""

    def __init__(self, metric: Metric) -> None:
        self.metric = metric

    def collect(self) -> Iterable[Metric]:
        yield self.metric


def encode(registry, accept_header: str) -> tuple[bytes, str]:
    """The body and content type prometheus_client's choose_encoder would give."""
    encoder, content_type = text_exposition.choose_encoder(accept_header)
    if escaping_of(encoder, text_exposition.generate_latest) in TEXT_ESCAPINGS:
        return render(registry, text_family, encoder), content_type
    if escaping_of(encoder, openmetrics_exposition.generate_latest) in OPENMETRICS_ESCAPINGS:
        body = render(registry, openmetrics_family, strip_eof(encoder))
        return body + OPENMETRICS_EOF, content_type
    return encoder(registry), content_type


def escaping_of(encoder: Callable, writer: Callable) -> str | None:
    """The name escaping `encoder` writes with when it is `writer` itself or `writer` bound to
    no more than an escaping and a version; None for any other encoder."""
    if encoder is writer:
        return UNDERSCORES  # Both writers' default.
    if (
        isinstance(encoder, partial)
        and encoder.func is writer
        and not encoder.args
        and encoder.keywords.keys() <= ENCODER_KEYWORDS
    ):
        return encoder.keywords.get("escaping", UNDERSCORES)
    return None


def strip_eof(encoder: Callable) -> Callable:
    def without_eof(collector) -> bytes:
        return encoder(collector).removesuffix(OPENMETRICS_EOF)

    return without_eof


def render(registry, fast: Callable[[Metric], str | None], fallback: Callable) -> bytes:
    parts: list[bytes] = []
    for metric in registry.collect():
        text = fast(metric)
        parts.append(text.encode("utf-8") if text is not None else fallback(Single(metric)))
    return b"".join(parts)


def plain(metric: Metric, sample_name: str | None) -> bool:
    """True when the escapings written here leave every name as it is (plain names: no colons, no
    reserved __ label names), there is no unit and every sample is a plain one.

    With a sample_name, every sample must carry that name; otherwise any plain name will do.
    """
    if metric.unit or not PLAIN_NAME.match(metric.name):
        return False
    names: set[str] = set()
    labels: set[str] = set()
    for sample in metric.samples:
        if sample.timestamp is not None or sample.exemplar is not None:
            return False
        if sample.native_histogram is not None:
            return False
        if sample_name is not None and sample.name != sample_name:
            return False
        if sample.name not in names:
            if not PLAIN_NAME.match(sample.name):
                return False
            names.add(sample.name)
        for label in sample.labels:
            if label not in labels:
                if label.startswith("__") or not PLAIN_NAME.match(label):
                    return False
                labels.add(label)
    return True


def sample_lines(metric: Metric) -> list[str]:
    lines = []
    for sample in metric.samples:
        if sample.labels:
            pairs = ",".join(
                f'{key}="{escape_value(value)}"' for key, value in sorted(sample.labels.items())
            )
            lines.append(f"{sample.name}{{{pairs}}} {floatToGoString(sample.value)}\n")
        else:
            lines.append(f"{sample.name} {floatToGoString(sample.value)}\n")
    return lines


def escape_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def text_family(metric: Metric) -> str | None:
    """Prometheus text format (0.0.4, or 1.0.0, which differs only by its name escaping), gauges
    and counters only: the format renames the other types and moves their _created samples into
    families of their own."""
    if metric.type not in ("gauge", "counter"):
        return None
    name = metric.name + "_total" if metric.type == "counter" else metric.name
    if not isinstance(metric, LineFamily) and not plain(metric, name):
        return None
    help_text = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
    header = f"# HELP {name} {help_text}\n# TYPE {name} {metric.type}\n"
    return header + body(metric)


def openmetrics_family(metric: Metric) -> str | None:
    """OpenMetrics writes every type alike (histograms and _created samples included), so any
    family with plain names and plain samples qualifies."""
    if not isinstance(metric, LineFamily) and not plain(metric, None):
        return None
    help_text = escape_value(metric.documentation)
    header = f"# HELP {metric.name} {help_text}\n# TYPE {metric.name} {metric.type}\n"
    return header + body(metric)


def body(metric: Metric) -> str:
    if isinstance(metric, LineFamily):
        return metric.sample_lines()
    return "".join(sample_lines(metric))
