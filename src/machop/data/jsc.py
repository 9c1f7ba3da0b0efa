"""Jet substructure classification (hls4ml LHC jets): 16 high-level features, 5 jet classes."""

from __future__ import annotations

import csv
import hashlib
import io
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from machop.data.dataset import SPLIT_NAMES, DataOptions, Dataset, DatasetInfo, Split
from machop.data.file_errors import DataNotFound, reading
from machop.data.splits import standardise, three_way_split
from machop.errors import DataError, exception_line
from machop.io_atomic import write_atomic

# MASE's feature order; the OpenML table names the same columns without the "j_" prefix.
FEATURES = ("j_zlogz", "j_c1_b0_mmdt", "j_c1_b1_mmdt", "j_c1_b2_mmdt", "j_c2_b1_mmdt",
            "j_c2_b2_mmdt", "j_d2_b1_mmdt", "j_d2_b2_mmdt", "j_d2_a1_b1_mmdt",
            "j_d2_a1_b2_mmdt", "j_m2_b1_mmdt", "j_m2_b2_mmdt", "j_n2_b1_mmdt", "j_n2_b2_mmdt",
            "j_mass_mmdt", "j_multiplicity")
CLASS_NAMES = ("g", "q", "w", "z", "t")
ONE_HOT_COLUMNS = tuple(f"j_{name}" for name in CLASS_NAMES)
CLASS_COLUMN = "class"
HDF5_TABLE = "t_allpar_new"
OPENML_NAME = "hls4ml_lhc_jets_hlf"
OPENML_URL = "https://www.openml.org/d/42468"
HDF5_PATTERNS = ("*.z", "*.h5", "*.hdf5")
TABLE_PATTERNS = ("*.arff", "*.csv", "*.parquet")
CACHE_VERSION = 1
INFO = DatasetInfo(name="jsc", num_classes=len(CLASS_NAMES), num_features=len(FEATURES),
                   image_size=None, class_names=CLASS_NAMES)


@dataclass(frozen=True)
class ColumnPlan:
    """Which source columns hold the 16 features (in FEATURES order) and the label."""

    features: tuple[str, ...]
    class_column: str | None
    one_hot: tuple[str, ...]

    @property
    def columns(self) -> list[str]:
        """Every source column to read, without repeats."""
        label = [self.class_column] if self.class_column else list(self.one_hot)
        return list(dict.fromkeys([*self.features, *label]))


Columns = dict[str, np.ndarray]
RawTable = tuple[ColumnPlan, Columns]


def load_jsc(options: DataOptions) -> Dataset:
    """JSC from a local hls4ml HDF5 or OpenML ARFF/CSV/parquet file: deduplicated, split, scaled."""
    folders = search_folders(options.data_dir)
    ignored: list[Path] = []
    for path in candidate_files(folders):
        dataset = load_from_file(path, options)
        if dataset is not None:
            return dataset
        ignored.append(path)
    download_note = "downloads disabled (download=False or MACHOP_OFFLINE set)"
    if options.download:
        fetched, download_note = fetch_openml_table(options.data_dir)
        if fetched is not None:
            dataset = load_from_file(fetched, options)
            if dataset is not None:
                return dataset
    raise DataNotFound(not_found_message(folders, ignored, download_note))


def search_folders(data_dir: Path) -> list[Path]:
    """Folders searched for JSC files, in order."""
    return [Path(data_dir), Path(data_dir) / "jsc"]


def candidate_files(folders: Sequence[Path]) -> Iterator[Path]:
    """HDF5 files first, then OpenML tables, folder by folder, sorted by name."""
    seen: set[Path] = set()
    for folder in folders:
        for pattern in (*HDF5_PATTERNS, *TABLE_PATTERNS):
            for path in sorted(folder.glob(pattern)):
                if path.is_file() and not path.name.startswith(".") and path.resolve() not in seen:
                    seen.add(path.resolve())
                    yield path


def not_found_message(folders: Sequence[Path], ignored: Sequence[Path], download_note: str) -> str:
    """One line: where we looked, what we skipped, and how to provide the data."""
    looked = " and ".join(str(folder) for folder in folders)
    skipped = f" (ignored, no JSC columns: {', '.join(map(str, ignored))})" if ignored else ""
    return (f"JSC data not found: looked in {looked} for *.z/*.h5/*.hdf5 (table {HDF5_TABLE}), "
            f"*.arff, *.csv or *.parquet{skipped}; {download_note}; download the OpenML "
            f"{OPENML_NAME} table (ARFF) from {OPENML_URL} into {folders[-1]} (CSV/parquet "
            f"exports or the hls4ml .z HDF5 file with table {HDF5_TABLE} work too), or set "
            f"data_dir / MACHOP_DATA_DIR")


def load_from_file(path: Path, options: DataOptions) -> Dataset | None:
    """The processed dataset from one file (or its cache); None when it holds no JSC table."""
    cache = cache_path(path, options.data_dir) if options.cache else None
    tensors = load_cache(cache) if cache is not None else None
    if tensors is None:
        raw = read_source(path)
        if raw is None:
            return None
        tensors = process_table(*raw, path=path)
        if cache is not None:
            save_cache(cache, tensors)
    splits = {name: Split(tensors[f"{name}_x"], tensors[f"{name}_y"]) for name in SPLIT_NAMES}
    return Dataset(info=INFO, **splits)


# ---------------------------------------------------------------- reading the source formats


def read_source(path: Path) -> RawTable | None:
    """Columns of a JSC source file by its suffix; None when it holds no JSC table."""
    readers: dict[str, Callable[[Path], RawTable | None]] = {
        ".z": read_hdf5, ".h5": read_hdf5, ".hdf5": read_hdf5,
        ".arff": read_arff, ".csv": read_csv, ".parquet": read_parquet}
    return readers[path.suffix.lower()](path)


def read_hdf5(path: Path) -> RawTable | None:
    """The hls4ml HDF5 compound table `t_allpar_new`; None when the file has no such table."""
    import h5py

    with reading(path, "HDF5 file"):
        with h5py.File(path, "r") as handle:
            if HDF5_TABLE not in handle:
                return None
            table = handle[HDF5_TABLE]
            names = getattr(getattr(table, "dtype", None), "names", None)
            if not isinstance(table, h5py.Dataset) or not names or table.ndim != 1:
                raise DataError(f"{path}: {HDF5_TABLE} is not a one-dimensional table with named "
                                f"columns (HDF5 compound dataset)")
            plan = plan_columns(names, path)
            if plan is None:
                raise DataError(f"{path}: table {HDF5_TABLE} has none of the JSC columns")
            data = table.fields(plan.columns)[()]
    return plan, {name: data[name] for name in plan.columns}


def read_arff(path: Path) -> RawTable | None:
    """An OpenML ARFF export, parsed with scipy."""
    from scipy.io import arff

    with reading(path, "ARFF file"):
        data, meta = arff.loadarff(path)
    plan = plan_columns(meta.names(), path)
    if plan is None:
        return None
    return plan, {name: data[name] for name in plan.columns}


def read_csv(path: Path) -> RawTable | None:
    """A CSV table with a header row."""
    with reading(path, "CSV file"):
        with open(path, newline="", encoding="utf-8-sig") as stream:  # tolerate a BOM
            header = next(csv.reader(stream), None)
    if not header:
        raise DataError(f"{path}: empty CSV file (expected a header row)")
    plan = plan_columns(header, path)
    if plan is None:
        return None
    positions = {name: header.index(name) for name in plan.columns}
    with reading(path, "CSV file"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy warns on a header-only file; we report it below
        cells = np.loadtxt(path, delimiter=",", skiprows=1, dtype=str, ndmin=2, quotechar='"',
                           usecols=list(positions.values()), encoding="utf-8")
    return plan, {name: cells[:, i] for i, name in enumerate(positions)}


def read_parquet(path: Path) -> RawTable | None:
    """A parquet table, read with pyarrow."""
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DataError(f"cannot read {path}: parquet needs pyarrow (pip install pyarrow)") from exc
    with reading(path, "parquet file"):
        names = pq.read_schema(path).names
    plan = plan_columns(names, path)
    if plan is None:
        return None
    with reading(path, "parquet file"):
        table = pq.read_table(path, columns=plan.columns)
        return plan, {name: arrow_to_numpy(table.column(name)) for name in plan.columns}


def arrow_to_numpy(column) -> np.ndarray:
    """A pyarrow column as numpy; dictionary-encoded strings are decoded first."""
    import pyarrow as pa

    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column.to_numpy()


# ---------------------------------------------------------------- columns to arrays


def plan_columns(names: Sequence[str], path: Path) -> ColumnPlan | None:
    """Match a file's column names to features and labels; None when none of them match."""
    by_feature = {feature_key(name): name for name in reversed(list(names))}
    by_label = {label_key(name): name for name in reversed(list(names))}
    features = [by_feature.get(feature_key(feature)) for feature in FEATURES]
    class_column = by_label.get(CLASS_COLUMN)
    one_hot = [by_label.get(name) for name in ONE_HOT_COLUMNS]
    if not any(features) and class_column is None and not any(one_hot):
        return None
    missing = [feature for feature, found in zip(FEATURES, features) if found is None]
    if class_column is None and not all(one_hot):
        missing.append("class (or one-hot " + "/".join(ONE_HOT_COLUMNS) + ")")
    if missing:
        raise DataError(f"{path}: missing JSC column(s) {', '.join(missing)} "
                        f"(has: {', '.join(map(str, names))})")
    return ColumnPlan(tuple(features), class_column, tuple(one_hot) if class_column is None else ())


def label_key(name: str | bytes) -> str:
    """A column name or class value, compared case-insensitively without quotes."""
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    return str(name).strip().strip("\"'").strip().lower()


def feature_key(name: str) -> str:
    """A feature column name with or without the hls4ml `j_` prefix."""
    return label_key(name).removeprefix("j_")


def process_table(plan: ColumnPlan, columns: Columns, *, path: Path) -> dict[str, torch.Tensor]:
    """Features and labels, deduplicated, split 70/10/20 and standardised on the train split."""
    x = feature_matrix(plan, columns, path)
    if plan.class_column is not None:
        y = class_indices(columns[plan.class_column], path)
    else:
        y = one_hot_indices(np.column_stack([numeric(columns[c], c, path) for c in plan.one_hot]),
                            path)
    x, y = drop_duplicate_rows(x, y)
    try:
        parts = three_way_split(x, y, stratify=False)
    except ValueError as exc:
        raise DataError(f"{path}: {len(y)} distinct rows are too few to split "
                        f"({exception_line(exc)})") from exc
    tensors = {}
    for name, (part_x, part_y) in standardise(parts).items():
        tensors[f"{name}_x"] = torch.from_numpy(np.ascontiguousarray(part_x, dtype=np.float32))
        tensors[f"{name}_y"] = torch.from_numpy(np.ascontiguousarray(part_y, dtype=np.int64))
    return tensors


def feature_matrix(plan: ColumnPlan, columns: Columns, path: Path) -> np.ndarray:
    """The (N, 16) float32 features; every value must be finite."""
    x = np.column_stack([numeric(columns[name], name, path) for name in plan.features])
    if len(x) == 0:
        raise DataError(f"{path}: the table has no rows")
    bad = ~np.isfinite(x)
    if bad.any():
        column = plan.features[int(np.nonzero(bad.any(axis=0))[0][0])]
        raise DataError(f"{path}: {int(bad.sum())} missing or non-finite feature value(s), "
                        f"e.g. in column {column!r}")
    return x


def numeric(values: np.ndarray, name: str, path: Path) -> np.ndarray:
    """One column as float32, or a DataError naming the column."""
    if np.ndim(values) != 1:
        raise DataError(f"{path}: column {name!r} has shape {np.shape(values)}, expected one "
                        f"value per row")
    try:
        return np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: column {name!r} is not numeric ({exception_line(exc)})") from exc


def class_indices(values: np.ndarray, path: Path) -> np.ndarray:
    """Class strings (g, q, w, z, t; str or bytes) as indices 0..4 in that order."""
    values = np.asarray(values)
    if values.dtype == object:
        # None/NaN among strings cannot be sorted by np.unique; their text is reported as unknown
        values = np.array([v if isinstance(v, (str, bytes)) else str(v) for v in values])
    uniques, inverse = np.unique(values, return_inverse=True)
    keys = [label_key(value).removeprefix("j_") for value in uniques]
    unknown = sorted({key for key in keys if key not in CLASS_NAMES})
    if unknown:
        raise DataError(f"{path}: unknown class label(s) {', '.join(map(repr, unknown[:5]))} "
                        f"(expected {', '.join(CLASS_NAMES)})")
    lookup = np.array([CLASS_NAMES.index(key) for key in keys], dtype=np.int64)
    return lookup[inverse.reshape(-1)]


def one_hot_indices(one_hot: np.ndarray, path: Path) -> np.ndarray:
    """One-hot label columns j_g..j_t as indices 0..4; every row needs exactly one 1."""
    ones = one_hot == 1
    valid = (ones | (one_hot == 0)).all(axis=1) & (ones.sum(axis=1) == 1)
    if not valid.all():
        raise DataError(f"{path}: {int((~valid).sum())} row(s) do not have exactly one of "
                        f"{', '.join(ONE_HOT_COLUMNS)} set to 1")
    return ones.argmax(axis=1).astype(np.int64)


def drop_duplicate_rows(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the first occurrence of each (features, label) row, in the original order."""
    rows = np.column_stack([x.astype(np.float64), y.astype(np.float64)])
    _, first = np.unique(rows, axis=0, return_index=True)
    keep = np.sort(first)
    return x[keep], y[keep]


# ---------------------------------------------------------------- cache and download


def cache_path(source: Path, data_dir: Path) -> Path:
    """Cache file for `source`, keyed by its location, size and modification time."""
    stat = source.stat()
    key = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|v{CACHE_VERSION}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(data_dir) / "jsc" / ".cache" / f"{source.stem}-{digest}.pt"


def load_cache(path: Path) -> dict[str, torch.Tensor] | None:
    """Cached split tensors, or None when the cache is missing or unusable (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # truncated or foreign file: rebuilding is always possible
        return None
    return tensors if cache_is_valid(tensors) else None


def cache_is_valid(tensors: object) -> bool:
    """Whether a loaded cache has every split with the right shapes and dtypes."""
    if not isinstance(tensors, dict) or tensors.get("version") != CACHE_VERSION:
        return False
    for name in SPLIT_NAMES:
        x, y = tensors.get(f"{name}_x"), tensors.get(f"{name}_y")
        if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
            return False
        if x.dtype != torch.float32 or x.ndim != 2 or x.shape[1] != len(FEATURES):
            return False
        if y.dtype != torch.int64 or y.shape != (len(x),):
            return False
    return True


def save_cache(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write the cache atomically and drop older caches of the same source; failures only warn."""
    try:
        write_atomic(path, lambda stream: torch.save({"version": CACHE_VERSION, **tensors}, stream))
        source_stem = path.stem.rsplit("-", 1)[0]
        for stale in path.parent.glob("*.pt"):
            if stale != path and stale.stem.rsplit("-", 1)[0] == source_stem:
                stale.unlink(missing_ok=True)
    except OSError as exc:
        warnings.warn(f"could not write JSC cache {path}: {exception_line(exc)}", stacklevel=3)


def fetch_openml_table(data_dir: Path) -> tuple[Path | None, str]:
    """Download the OpenML table and save it as CSV under data_dir/jsc; (path or None, note)."""
    target = Path(data_dir) / "jsc" / f"{OPENML_NAME}.csv"
    try:
        from sklearn.datasets import fetch_openml

        with warnings.catch_warnings():
            # scikit-learn warns on every retry; the outcome is reported in one line instead
            warnings.simplefilter("ignore")
            bunch = fetch_openml(OPENML_NAME, version=1, as_frame=False, parser="liac-arff",
                                 data_home=str(data_dir))
        write_atomic(target, lambda stream: write_table_csv(
            stream, list(bunch.feature_names), np.asarray(bunch.data), np.asarray(bunch.target)))
    except Exception as exc:  # offline, HTTP errors, odd payloads: report and fall through
        return None, f"OpenML download failed ({exception_line(exc)})"
    return target, "downloaded from OpenML"


def write_table_csv(stream, feature_names: list[str], data: np.ndarray, target: np.ndarray) -> None:
    """Features and string labels as CSV; floats use repr so they read back exactly."""
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    writer = csv.writer(text)
    writer.writerow([*feature_names, CLASS_COLUMN])
    labels = [label_key(value) for value in target]
    writer.writerows([*row, label] for row, label in zip(data.astype(np.float64).tolist(), labels))
    text.flush()
    text.detach()
