"""k-anonymity for a client's own tabular records: Mondrian multidimensional partitioning.

Theory of operation
-------------------
A table is *k-anonymous* over its quasi-identifiers (QIs: the columns an adversary could
know from elsewhere, such as age, sex, body-mass index) when every record shares its
generalised QI values with at least ``k - 1`` others (Samarati and Sweeney 1998). Each client
makes its own records k-anonymous before it trains on them; nothing here talks to anyone.

The generaliser is strict Mondrian multidimensional partitioning (LeFevre, DeWitt and
Ramakrishnan, "Mondrian Multidimensional K-Anonymity", ICDE 2006, section 4, algorithm
"Anonymize(partition)"):

1. start with one partition holding every record, each QI fully generalised;
2. pick the QI with the widest *normalised* range in the partition (numeric: the value
   range over the table's range; categorical: the leaves under the partition's hierarchy
   node over all leaves), and try to split on it:

   - numeric: at the median, ``x <= median`` against ``x > median``;
   - categorical: into the children of the partition's hierarchy node (a user-declared
     generalisation hierarchy; the default one is flat: each value, or ``*``);

3. the split is *allowable* when every part keeps at least ``k`` records; if it is not,
   try the next-widest QI; a partition with no allowable split is an equivalence class;
4. recurse on the parts.

Every class then holds at least ``k`` records, so the table has ``k_achieved >= k`` unless
it holds fewer than ``k`` records in all, in which case every record is suppressed.
Each record's QI values are replaced by its class's generalisation: the range
``[min, max]`` of the class for a numeric QI, the hierarchy node for a categorical one. The
model trains on a number per QI: the range's midpoint, or the mean of the node's leaf values.
Non-QI columns and labels are left alone.

Information loss, reported by :class:`AnonymityReport`:

- ``ncp``: the normalised certainty penalty (Xu et al., KDD 2006; the global form of
  Ghinita et al., VLDB 2007), in ``[0, 1]``: the mean over records and QIs of the class's
  range over the table's range (numeric), or of ``|leaves(node)| / |all leaves|`` for a
  categorical node that is not a leaf (0 for a leaf). 0: nothing generalised; 1: every QI
  fully generalised.
- ``discernibility``: ``sum |E|^2`` over classes ``E``, plus ``n * |suppressed|`` (Bayardo and
  Agrawal, ICDE 2005); ``n * k`` at best when every class has exactly ``k`` records.
- ``avg_class_size``: the normalised average class size ``n / (classes * k)`` (LeFevre
  2006), 1 at best.

Values are compared as given: Mondrian and both loss measures are invariant under a
per-column affine map, so running it on the standardised features of :mod:`fl.training.data` gives
the same classes as on the raw values.

No maintained library fit: ``anjana`` 1.2.3 (full-domain generalisation over user-built
hierarchies for every QI) pins ``numpy==2.0.2`` and ``pandas==2.3.3`` exactly, which would
downgrade this environment's numpy; ``anonypy`` 0.2.1 (pandas Mondrian, last release 2024)
has no categorical hierarchies and no loss measures; ``pycanon`` only measures. This module
is protocol-free numpy code over one client's array.

.. warning::
   k-anonymity is not differential privacy. It hides which of ``k`` records is someone's,
   not what the ``k`` records share (homogeneity), nor anything an adversary can combine
   with other releases or background knowledge (SECURITY.md, "k-anonymity").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from fl.training.data import DIABETES_FEATURES, Dataset, Shard
from secagg.errors import ConfigError

__all__ = [
    "DEFAULT_QUASI_IDENTIFIERS",
    "AnonymisedTable",
    "AnonymityReport",
    "EquivalenceClass",
    "Hierarchy",
    "QuasiIdentifier",
    "anonymise",
    "anonymise_shards",
    "feature_names",
    "quasi_identifiers",
    "summarise",
]

#: The QI columns each bundled tabular dataset takes when ``--quasi-identifiers`` is not
#: given. ``diabetes``: the demographics and vital signs a hospital registry or another
#: release would hold next to a name (age, sex, body-mass index, blood pressure); the six
#: serum measurements are the sensitive payload. ``breast_cancer`` has no demographics at
#: all: its 30 columns describe cell nuclei in a biopsy image. The ones that could be linked
#: are the tumour's size (radius, perimeter and area, as the mean and the worst of the
#: nuclei), which pathology reports and cancer registries record; texture, smoothness and
#: the like appear nowhere else. Both mean and worst sizes are QIs because each predicts the
#: other (correlation about 0.97): generalising one and leaving the other exact would keep
#: the record linkable.
DEFAULT_QUASI_IDENTIFIERS: dict[str, tuple[str, ...]] = {
    "diabetes": ("age", "sex", "bmi", "bp"),
    "breast_cancer": ("mean_radius", "mean_perimeter", "mean_area", "worst_radius",
                      "worst_perimeter", "worst_area"),
}

_MEASURES = ("radius", "texture", "perimeter", "area", "smoothness", "compactness",
             "concavity", "concave_points", "symmetry", "fractal_dimension")
#: Column names of the bundled tabular datasets (scikit-learn's, spaces as underscores).
FEATURE_NAMES: dict[str, tuple[str, ...]] = {
    "breast_cancer": (tuple(f"mean_{m}" for m in _MEASURES) + tuple(f"{m}_error" for m in _MEASURES)
                      + tuple(f"worst_{m}" for m in _MEASURES)),
    "diabetes": DIABETES_FEATURES,
}

#: QI columns of the bundled datasets that are categorical (flat hierarchy by default).
CATEGORICAL_COLUMNS: dict[str, frozenset[str]] = {"diabetes": frozenset({"sex"})}

FloatArray = NDArray[np.float64]


class Hierarchy:
    """A generalisation hierarchy for one categorical QI: a tree whose leaves are values.

    Args:
        children: node label -> its children, each a node label or a leaf value (a number as
            it appears in the column). Every leaf must sit under ``root``.
        root: the label of the most general node (default ``"*"``).

    Raises:
        ConfigError: a node reached twice, a cycle, or a root with no children.
    """

    def __init__(self, children: Mapping[str, Sequence[str | float]], root: str = "*") -> None:
        if root not in children or not children[root]:
            raise ConfigError(f"hierarchy needs children for its root {root!r}")
        self.root = root
        self._children: dict[str, tuple[str | float, ...]] = {
            str(k): tuple(v) for k, v in children.items()}
        self._leaves: dict[str, tuple[float, ...]] = {}
        seen: set[str | float] = set()

        def walk(node: str, depth: int) -> tuple[float, ...]:
            if depth > len(self._children):
                raise ConfigError(f"hierarchy has a cycle through {node!r}")
            out: list[float] = []
            for child in self._children[node]:
                if child in seen:
                    raise ConfigError(f"hierarchy reaches {child!r} twice; it must be a tree")
                seen.add(child)
                if isinstance(child, str):
                    if child not in self._children:
                        raise ConfigError(f"hierarchy node {child!r} has no children listed")
                    out.extend(walk(child, depth + 1))
                else:
                    out.append(float(child))
            self._leaves[node] = tuple(sorted(out))
            return self._leaves[node]

        walk(root, 0)

    @classmethod
    def flat(cls, values: Sequence[float]) -> Hierarchy:
        """The two-level hierarchy: each value, or ``*`` (suppress the attribute)."""
        vals = sorted({float(v) for v in values})
        return cls({"*": vals})

    def leaves(self, node: str | float) -> tuple[float, ...]:
        """The leaf values under ``node`` (a leaf is its own only leaf)."""
        if isinstance(node, str):
            return self._leaves[node]
        return (float(node),)

    def children(self, node: str | float) -> tuple[str | float, ...]:
        """The children of ``node`` (none for a leaf)."""
        return self._children.get(node, ()) if isinstance(node, str) else ()

    @property
    def size(self) -> int:
        """Number of leaves."""
        return len(self._leaves[self.root])


@dataclass(frozen=True)
class QuasiIdentifier:
    """One QI column: numeric (a range) when ``hierarchy`` is ``None``, else categorical."""

    column: int
    name: str
    hierarchy: Hierarchy | None = None


@dataclass(frozen=True)
class EquivalenceClass:
    """Records that share one generalisation.

    Attributes:
        rows: positions of the records in the input table.
        ranges: per QI (in the order given), ``(lo, hi)`` for a numeric QI; for a
            categorical one, ``(lo, hi)`` of its node's leaf values.
        nodes: per QI, the hierarchy node (``None`` for numeric QIs).
    """

    rows: NDArray[np.int64]
    ranges: tuple[tuple[float, float], ...]
    nodes: tuple[str | float | None, ...]


@dataclass(frozen=True)
class AnonymityReport:
    """What :func:`anonymise` did to one table (see the module docstring for the measures)."""

    k: int
    k_achieved: int
    records: int
    classes: int
    suppressed: int
    ncp: float
    discernibility: float
    avg_class_size: float
    quasi_identifiers: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class AnonymisedTable:
    """The recoded table: ``x`` keeps the rows ``kept`` of the input, QIs recoded."""

    x: FloatArray
    kept: NDArray[np.int64]
    classes: tuple[EquivalenceClass, ...]
    report: AnonymityReport


def feature_names(ds: Dataset) -> tuple[str, ...]:
    """The names ``--quasi-identifiers`` accepts for ``ds``'s columns: :data:`FEATURE_NAMES`
    for the bundled tables, ``pixel_R_C`` for images, ``x0, x1, ...`` otherwise."""
    names = FEATURE_NAMES.get(ds.name)
    if names is not None and len(names) == ds.n_features:
        return names
    if ds.image_shape is not None:
        h, w = ds.image_shape
        return tuple(f"pixel_{r}_{c}" for r in range(h) for c in range(w))
    return tuple(f"x{i}" for i in range(ds.n_features))


def quasi_identifiers(
    feature_names: Sequence[str], names: Sequence[str] | None, dataset: str,
    x: NDArray[np.floating],
) -> list[QuasiIdentifier]:
    """Resolve QI names (or column numbers) against a dataset's columns.

    ``names=None`` takes :data:`DEFAULT_QUASI_IDENTIFIERS`. A bundled categorical column
    (:data:`CATEGORICAL_COLUMNS`) gets a flat hierarchy over the values in ``x``.

    Raises:
        ConfigError: an unknown column (the message lists the valid ones), a repeated one,
            or a dataset without defaults and no names.
    """
    if names is None:
        if dataset not in DEFAULT_QUASI_IDENTIFIERS:
            raise ConfigError(
                f"{dataset} has no default quasi-identifiers; name them with "
                f"--quasi-identifiers (columns: {', '.join(feature_names[:6])}, ...), or use "
                f"one of: {', '.join(DEFAULT_QUASI_IDENTIFIERS)}")
        names = DEFAULT_QUASI_IDENTIFIERS[dataset]
    if not names:
        raise ConfigError("k-anonymity needs at least one quasi-identifier column")
    out: list[QuasiIdentifier] = []
    for raw in names:
        name = str(raw).strip()
        if name.isdigit() and int(name) < len(feature_names):
            col = int(name)
        elif name in feature_names:
            col = list(feature_names).index(name)
        else:
            raise ConfigError(
                f"unknown quasi-identifier {name!r} for {dataset}; choose columns from: "
                f"{', '.join(feature_names)} (or their numbers 0..{len(feature_names) - 1})")
        if any(q.column == col for q in out):
            raise ConfigError(f"quasi-identifier {feature_names[col]!r} is named twice")
        cat = CATEGORICAL_COLUMNS.get(dataset, frozenset())
        hier = Hierarchy.flat(np.unique(x[:, col]).tolist()) if feature_names[col] in cat else None
        out.append(QuasiIdentifier(col, feature_names[col], hier))
    return out


def anonymise(x: NDArray[np.floating], qis: Sequence[QuasiIdentifier], k: int) -> AnonymisedTable:
    """Make ``x`` k-anonymous over ``qis`` with strict Mondrian partitioning.

    Args:
        x: the records, 2-D float (one client's own table).
        qis: the quasi-identifier columns.
        k: the anonymity parameter, an integer >= 1.

    Returns:
        An :class:`AnonymisedTable`. With fewer than ``k`` records, every record is
        suppressed (``x`` is empty and ``report.suppressed`` is the record count).

    Raises:
        ConfigError: a bad ``k``, an empty QI list, a column out of range, a non-finite QI
            value, or a categorical value missing from its hierarchy.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be an integer >= 1, e.g. 5, got {k!r}")
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ConfigError(f"x must be 2-D (records x columns), got shape {a.shape}")
    if not qis:
        raise ConfigError("k-anonymity needs at least one quasi-identifier column")
    n = a.shape[0]
    names = tuple(q.name for q in qis)
    for q in qis:
        if not 0 <= q.column < a.shape[1]:
            raise ConfigError(f"quasi-identifier {q.name!r} is column {q.column}, but x has "
                              f"{a.shape[1]} columns")
        col = a[:, q.column]
        if not np.all(np.isfinite(col)):
            raise ConfigError(f"quasi-identifier {q.name!r} holds NaN or infinite values")
        if q.hierarchy is not None:
            missing = set(np.unique(col).tolist()) - set(q.hierarchy.leaves(q.hierarchy.root))
            if missing:
                raise ConfigError(f"values {sorted(missing)[:3]} of {q.name!r} are not leaves "
                                  "of its hierarchy")
    if n < k:
        report = AnonymityReport(int(k), 0, n, 0, n, 1.0 if n else 0.0, float(n * n), 0.0, names)
        return AnonymisedTable(np.empty((0, a.shape[1])), np.empty(0, np.int64), (), report)
    spans = [_span(a[:, q.column], q) for q in qis]
    roots: list[str | float | None] = [q.hierarchy.root if q.hierarchy else None for q in qis]
    done: list[tuple[NDArray[np.int64], list[str | float | None]]] = []
    stack: list[tuple[NDArray[np.int64], list[str | float | None]]] = [
        (np.arange(n, dtype=np.int64), roots)]
    while stack:
        rows, nodes = stack.pop()
        parts = _split(a, rows, nodes, qis, spans, int(k))
        if parts is None:
            done.append((rows, nodes))
        else:
            stack.extend(parts)
    done.sort(key=lambda part: int(part[0].min()))
    out = a.copy()
    classes: list[EquivalenceClass] = []
    loss = 0.0
    for rows, nodes in done:
        ranges: list[tuple[float, float]] = []
        for j, q in enumerate(qis):
            col = a[rows, q.column]
            if q.hierarchy is None:
                lo, hi = float(col.min()), float(col.max())
                out[rows, q.column] = (lo + hi) / 2.0
                loss += len(rows) * ((hi - lo) / spans[j] if spans[j] > 0 else 0.0)
            else:
                node = nodes[j]
                leaves = q.hierarchy.leaves(node if node is not None else q.hierarchy.root)
                lo, hi = leaves[0], leaves[-1]
                out[rows, q.column] = float(np.mean(leaves))
                if len(leaves) > 1:
                    loss += len(rows) * len(leaves) / q.hierarchy.size
            ranges.append((lo, hi))
        classes.append(EquivalenceClass(rows, tuple(ranges), tuple(nodes)))
    sizes = [len(c.rows) for c in classes]
    report = AnonymityReport(
        k=int(k), k_achieved=min(sizes), records=n, classes=len(classes), suppressed=0,
        ncp=loss / (n * len(qis)), discernibility=float(sum(s * s for s in sizes)),
        avg_class_size=n / (len(classes) * k), quasi_identifiers=names)
    return AnonymisedTable(out, np.arange(n, dtype=np.int64), tuple(classes), report)


def _span(col: FloatArray, q: QuasiIdentifier) -> float:
    if q.hierarchy is not None:
        return float(q.hierarchy.size)
    return float(col.max() - col.min())


def _split(
    a: FloatArray, rows: NDArray[np.int64], nodes: list[str | float | None],
    qis: Sequence[QuasiIdentifier], spans: list[float], k: int,
) -> list[tuple[NDArray[np.int64], list[str | float | None]]] | None:
    """The allowable split of the widest QI that has one, or ``None``."""
    if len(rows) < 2 * k:
        return None
    widths = []
    for j, q in enumerate(qis):
        if q.hierarchy is None:
            col = a[rows, q.column]
            w = float(col.max() - col.min()) / spans[j] if spans[j] > 0 else 0.0
        else:
            node = nodes[j]
            leaves = q.hierarchy.leaves(node if node is not None else q.hierarchy.root)
            w = (len(leaves) - 1) / max(q.hierarchy.size - 1, 1)
        widths.append(w)
    for j in sorted(range(len(qis)), key=lambda i: -widths[i]):
        if widths[j] <= 0:
            break
        q = qis[j]
        col = a[rows, q.column]
        if q.hierarchy is None:
            median = float(np.median(col))
            left = col <= median
            if left.all():  # the median is the maximum: split below it
                left = col < median
            if k <= int(left.sum()) <= len(rows) - k:
                return [(rows[left], nodes), (rows[~left], nodes)]
            continue
        node = nodes[j]
        if node is None:
            continue
        groups: list[tuple[NDArray[np.int64], list[str | float | None]]] = []
        for child in q.hierarchy.children(node):
            mask = np.isin(col, q.hierarchy.leaves(child))
            if mask.any():
                sub = list(nodes)
                sub[j] = child
                groups.append((rows[mask], sub))
        if len(groups) > 1 and all(len(g[0]) >= k for g in groups):
            return groups
        if len(groups) == 1:  # every record sits under one child: specialise for free
            sub_rows, sub_nodes = groups[0]
            return _split(a, sub_rows, sub_nodes, qis, spans, k) or [(sub_rows, sub_nodes)]
    return None


def summarise(reports: Sequence[AnonymityReport]) -> dict[str, object]:
    """The run-level figures over the clients' reports: the smallest ``k_achieved``, the
    record-weighted mean NCP, the summed discernibility, suppressed records and classes.

    Raises:
        ConfigError: no reports.
    """
    if not reports:
        raise ConfigError("no anonymity reports to summarise")
    records = sum(r.records for r in reports)
    return {
        "k": reports[0].k,
        "quasi_identifiers": list(reports[0].quasi_identifiers),
        "k_achieved": min(r.k_achieved for r in reports),
        "records": records,
        "classes": sum(r.classes for r in reports),
        "suppressed": sum(r.suppressed for r in reports),
        "ncp": sum(r.ncp * r.records for r in reports) / max(records, 1),
        "discernibility": sum(r.discernibility for r in reports),
        "avg_class_size": sum(r.avg_class_size * r.records for r in reports) / max(records, 1),
    }


def anonymise_shards(
    ds: Dataset, shards: Sequence[Shard], k: int, names: Sequence[str] | None,
) -> tuple[list[Shard], dict[str, object]]:
    """Each client makes its own shard k-anonymous over the dataset's QIs (or ``names``).

    Returns:
        ``(shards with recoded QI columns, summarise(reports))``. A recoded shard's ``x``
        differs from ``ds.x_train[indices]`` in the QI columns. In a deployment each
        client keeps its report; the simulator gathers them for the run's report.

    Raises:
        ConfigError: a bad ``k`` or QI name, or a client holding fewer than ``k`` records
            (its every record would be suppressed: the message names the largest ``k``).
    """
    qis = quasi_identifiers(feature_names(ds), names, ds.name, ds.x_train)
    smallest = min(len(s) for s in shards)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k-anonymity k must be an integer >= 1, e.g. 5, got {k!r}")
    if smallest < k:
        raise ConfigError(f"a client holds {smallest} records, fewer than k={k}, and would "
                          f"suppress them all; use --k-anonymity {smallest} or less, or fewer "
                          "--clients")
    out: list[Shard] = []
    reports: list[AnonymityReport] = []
    for s in shards:
        table = anonymise(s.x, qis, k)
        out.append(Shard(np.ascontiguousarray(table.x, dtype=np.float32),
                         s.y[table.kept], s.indices[table.kept]))
        reports.append(table.report)
    return out, summarise(reports)
