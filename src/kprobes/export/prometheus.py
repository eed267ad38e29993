"""A running program's maps as Prometheus metrics (``kprobes serve``).

Every scrape reads the maps afresh (the BPF engine's maps from the kernel) and
turns each into one metric family named ``PREFIX_NAME`` (``@bytes`` →
``kprobes_bytes``, the bare ``@`` → ``kprobes_map``):

=====================  =====================================================
map value              metric
=====================  =====================================================
count(), sum()         counter (``kprobes_NAME_total``)
hist()                 histogram: ``_bucket{le=…}`` at the log2 buckets'
                       integer upper bounds (0, 1, 3, 7, …, 2^k-1), ``_count``
                       and ``_sum``; hist() keeps no sum, so ``_sum`` is the
                       lower bound ``Σ count × bucket low`` (the HELP says so)
lhist()                histogram at the linear buckets' integer upper bounds
min(), max(), avg()    gauge
stats()                summary (``_count`` and ``_sum``, no quantiles)
integer (``@x = 5``)   gauge
string values          left out
=====================  =====================================================

Map keys become labels named after the key expressions (``@[comm, pid]`` →
``comm``, ``pid``; ``str(args->filename)`` → ``filename``; otherwise ``key``,
``key1``…); values are the keys as bpftrace prints them (prometheus_client
escapes ``\\``, ``"`` and newlines).  Histogram bucket sets only grow, so a
series keeps the same buckets from one scrape to the next.

Cardinality is capped: a map exports at most ``max_series`` entries per scrape
(its largest, in bpftrace's print order); ``kprobes_map_series_dropped{map}``
(a gauge) says how many it left out at the last scrape, so ``@[comm, pid]`` on a
busy machine cannot blow up a scrape.

kprobes' own series: ``kprobes_events_lost_total{source}`` (what the engine
lost so far, where it counts losses as it reads: the BPF engine's rings),
``kprobes_map_entries{map}`` (entries in each map, before the cap),
``kprobes_scrapes_total`` and ``kprobes_program_start_time_seconds``.

Needs ``prometheus_client`` (``pip install 'kprobes[prometheus]'``); nothing
else in kprobes imports this module.
"""

from __future__ import annotations

import re
import threading
import time
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
)

from ..agg.aggregations import (
    Aggregation,
    Avg,
    Count,
    IntValue,
    LinearHist,
    Log2Hist,
    Max,
    Min,
    Stats,
    Sum,
)
from ..errors import KprobesError

if TYPE_CHECKING:
    from ..agg.bpfmap import BpfMap
    from ..lang import ast

__all__ = ["MapCollector", "label_names", "metric_name", "log2_buckets", "lhist_buckets",
           "require_client", "DEFAULT_MAX_SERIES"]

DEFAULT_MAX_SERIES = 1000
_BAD = re.compile(r"[^a-zA-Z0-9_]")


def require_client() -> Any:
    """The prometheus_client module, or a clear error."""
    try:
        import prometheus_client
    except ImportError:
        raise KprobesError("kprobes serve needs the prometheus_client Python package",
                           hint="pip install 'kprobes[prometheus]'") from None
    return prometheus_client


def metric_name(map_name: str, prefix: str = "kprobes") -> str:
    """``@bytes`` → ``kprobes_bytes``; ``@`` → ``kprobes_map``."""
    base = _BAD.sub("_", map_name.lstrip("@")) or "map"
    return f"{prefix}_{base}" if prefix else base


def _sanitize_label(name: str) -> str:
    name = _BAD.sub("_", name).strip("_") or "key"
    if name[0].isdigit():
        name = "k_" + name
    if name.startswith("__") or name in ("le", "quantile"):
        name = "k" + name
    return name


def _key_label(e: Any) -> Optional[str]:
    from ..lang import ast as A

    if isinstance(e, A.Builtin):
        return e.name
    if isinstance(e, A.Var):
        return e.name.lstrip("$")
    if isinstance(e, A.FieldAccess):
        return e.field
    if isinstance(e, A.Call) and e.args:
        inner = _key_label(e.args[0])
        return inner if inner is not None else e.name
    if isinstance(e, A.Call):
        return e.name
    return None


def _walk(node: Any) -> Iterator[Any]:
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, (list, tuple)):
            stack.extend(reversed(n))
            continue
        fields = getattr(n, "__dataclass_fields__", None)
        if fields is None:
            continue
        yield n
        stack.extend(reversed([getattr(n, name, None) for name in fields]))


def label_names(program: "ast.Program") -> Dict[str, List[str]]:
    """Label names of every keyed map (``@name`` -> names), from the first place the program
    uses it."""
    from ..lang import ast as A

    out: Dict[str, List[str]] = {}
    for node in _walk(program):
        if not isinstance(node, A.Map) or not node.keys:
            continue
        name = "@" + node.name.lstrip("@")
        if name in out:
            continue
        labels: List[str] = []
        for i, k in enumerate(node.keys):
            base = _key_label(k)
            label = _sanitize_label(base) if base else ("key" if i == 0 else f"key{i}")
            while label in labels:
                label = f"{label}{i}"
            labels.append(label)
        out[name] = labels
    return out


def log2_buckets(hist: Log2Hist, upto: int, negative: bool = False) -> Tuple[List[Tuple[str, float]], float]:
    """Cumulative ``(le, count)`` of a hist() up to bucket index ``upto`` and ``+Inf``, and the
    sum's lower bound.  The negative-values bucket (``le="-1"``) is there only with
    ``negative`` (a histogram with a negative bucket has no ``_sum``/``_count`` in
    OpenMetrics)."""
    counts = hist.counts()
    out: List[Tuple[str, float]] = []
    acc = 0
    low_sum = 0.0
    for i, c in enumerate(counts):
        low = 1 << (i - 2) if i >= 2 else 0
        low_sum += c * low
        acc += c
        if i <= upto and (i > 0 or negative):
            le = -1 if i == 0 else (1 << (i - 1)) - 1
            out.append((str(le), float(acc)))
    out.append(("+Inf", float(acc)))
    return out, low_sum


def lhist_buckets(hist: LinearHist, underflow: bool = True) -> Tuple[List[Tuple[str, float]], float]:
    """Cumulative ``(le, count)`` of an lhist() (every bucket: the set is fixed) and the sum's
    lower bound; the underflow bucket (``le=min-1``) only with ``underflow``."""
    counts = hist.counts()
    out: List[Tuple[str, float]] = []
    acc = 0
    low_sum = 0.0
    last = hist.nbuckets + 1
    for i, c in enumerate(counts):
        acc += c
        if i == 0:
            if underflow:
                out.append((str(hist.min - 1), float(acc)))
        elif i < last:
            low = hist.min + (i - 1) * hist.step
            low_sum += c * low
            out.append((str(low + hist.step - 1), float(acc)))
        else:
            low_sum += c * hist.max
    out.append(("+Inf", float(acc)))
    return out, low_sum


def _label_value(v: object) -> str:
    text = str(v)
    if text.startswith("\n"):  # a stack: frames joined, one line
        text = ";".join(ln.strip() for ln in text.strip("\n").split("\n"))
    return text.encode("utf-8", "replace").decode("utf-8")


class MapCollector:
    """A prometheus_client collector over live maps (see the module docstring).

    ``maps`` returns the program's maps (empty until the program runs); ``loss``
    returns lost-event counts by source.
    """

    def __init__(self, maps: Callable[[], Mapping[str, "BpfMap"]],
                 labels: Optional[Mapping[str, Sequence[str]]] = None,
                 prefix: str = "kprobes", max_series: int = DEFAULT_MAX_SERIES,
                 loss: Optional[Callable[[], Mapping[str, int]]] = None) -> None:
        self.maps = maps
        self.labels = dict(labels or {})
        self.prefix = prefix
        self.max_series = max_series
        self.loss = loss
        self.scrapes = 0
        self.started = time.time()
        self._upto: Dict[str, int] = {}
        self._negative: Set[str] = set()  # maps that had values below 0 (below an lhist's min)
        self._lock = threading.Lock()

    def describe(self) -> List[Any]:
        return []  # families depend on the running program: no check at registration

    def _items(self, m: "BpfMap") -> List[Tuple[Tuple[Any, ...], Aggregation]]:
        for _ in range(5):
            try:
                return list(m.sorted_items())
            except RuntimeError:  # the program's thread changed the map while we copied it
                continue
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
            SummaryMetricFamily,
        )

        with self._lock:
            self.scrapes += 1
            p = self.prefix
            entries = GaugeMetricFamily(f"{p}_map_entries", "entries in each map", labels=["map"])
            dropped = GaugeMetricFamily(f"{p}_map_series_dropped",
                                        "entries of each map left out of the last scrape "
                                        "(the cardinality cap, --max-series)", labels=["map"])
            try:
                maps = dict(self.maps())
            except Exception:  # noqa: BLE001 - the program ended: no maps to read
                maps = {}
            for name in sorted(maps):
                m = maps[name]
                try:
                    items = self._items(m)
                except Exception:  # noqa: BLE001 - a map that cannot be read (the session closed)
                    continue
                shown = "@" + name.lstrip("@")
                entries.add_metric([shown], float(len(items)))
                kept = items[-self.max_series:] if len(items) > self.max_series else items
                dropped.add_metric([shown], float(len(items) - len(kept)))
                fam = self._family(name, m, kept, CounterMetricFamily, GaugeMetricFamily,
                                   HistogramMetricFamily, SummaryMetricFamily)
                if fam is not None:
                    yield fam
            yield entries
            yield dropped
            lost = CounterMetricFamily(f"{p}_events_lost", "events the engine lost, by source",
                                       labels=["source"])
            if self.loss is not None:
                try:
                    for source, n in sorted(self.loss().items()):
                        lost.add_metric([source], float(n))
                except Exception:  # noqa: BLE001 - loss counts are best effort
                    pass
            yield lost
            yield CounterMetricFamily(f"{p}_scrapes", "scrapes served", value=float(self.scrapes))
            yield GaugeMetricFamily(f"{p}_program_start_time_seconds",
                                    "when the program started (Unix time)", value=self.started)

    def _family(self, name: str, m: "BpfMap", items: Sequence[Tuple[Tuple[Any, ...], Aggregation]],
                Counter: Any, Gauge: Any, Histogram: Any, Summary: Any) -> Any:
        metric = metric_name(name, self.prefix)
        t = m.template
        labels = list(self.labels.get("@" + name.lstrip("@"), []))
        nkeys = max((len(k) for k, _ in items), default=len(labels))
        while len(labels) < nkeys:
            labels.append("key" if not labels else f"key{len(labels)}")
        labels = labels[:nkeys]

        def lv(key: Tuple[Any, ...]) -> List[str]:
            return [_label_value(k) for k in key]

        doc = f"bpftrace map @{name.lstrip('@')}: {t.kind}()"
        if isinstance(t, (Count, Sum)):
            fam = Counter(metric, doc, labels=labels)
            for key, agg in items:
                fam.add_metric(lv(key), float(agg.count if isinstance(agg, Count) else agg.total))  # type: ignore[attr-defined]
            return fam
        if isinstance(t, Log2Hist):
            fam = Histogram(metric, doc + " (log2 buckets; _sum is a lower bound: hist() keeps no sum)",
                            labels=labels)
            upto = self._upto.get(name, 2)
            neg = name in self._negative
            for _key, agg in items:
                nz = [i for i, c in enumerate(agg.counts()) if c]  # type: ignore[attr-defined]
                if nz:
                    upto = max(upto, nz[-1])
                    neg = neg or nz[0] == 0
            self._upto[name] = upto
            if neg:
                self._negative.add(name)
            for key, agg in items:
                buckets, low = log2_buckets(agg, upto, neg)  # type: ignore[arg-type]
                fam.add_metric(lv(key), buckets, sum_value=low)
            return fam
        if isinstance(t, LinearHist):
            fam = Histogram(metric, doc + f" ({t.min}..{t.max} step {t.step}; _sum is a lower bound)",
                            labels=labels)
            under = t.min > 0 or name in self._negative
            if not under and any(agg.counts()[0] for _k, agg in items):  # type: ignore[attr-defined]
                self._negative.add(name)
                under = True
            for key, agg in items:
                buckets, low = lhist_buckets(agg, under)  # type: ignore[arg-type]
                fam.add_metric(lv(key), buckets, sum_value=low)
            return fam
        if isinstance(t, Stats):
            fam = Summary(metric, doc, labels=labels)
            for key, agg in items:
                assert isinstance(agg, Avg)
                fam.add_metric(lv(key), count_value=float(agg.count), sum_value=float(agg.total))
            return fam
        if isinstance(t, (Min, Max, Avg, IntValue)):
            fam = Gauge(metric, doc, labels=labels)
            for key, agg in items:
                if isinstance(agg, Avg):
                    value = float(agg.average)
                elif isinstance(agg, (Min, Max)) and not agg.is_set:
                    continue
                else:
                    value = float(agg.value)  # type: ignore[attr-defined]
                fam.add_metric(lv(key), value)
            return fam
        return None  # string values: not a number
