"""JSC loader: every source format, deduplication, splitting, scaling, caching and errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.helpers.jsc import OPENML_FEATURES, number, write_csv

from machop.data.dataset import DataOptions
from machop.data.jsc import CLASS_NAMES, FEATURES, load_jsc
from machop.data.splits import three_way_split
from machop.errors import DataError

CLASS_COUNTS = {"g": 100, "q": 80, "w": 60, "z": 40, "t": 20}  # distinct, so the mapping is pinned
NUM_UNIQUE = sum(CLASS_COUNTS.values())
NUM_DUPLICATES = 25


@pytest.fixture(scope="module")
def table() -> tuple[np.ndarray, np.ndarray]:
    """300 distinct rows plus 25 repeats: float32 features and class letters."""
    rng = np.random.default_rng(7)
    letters = np.array([c for c, n in CLASS_COUNTS.items() for _ in range(n)])
    x = rng.normal(3.0, 2.0, size=(NUM_UNIQUE, len(FEATURES))).astype(np.float32)
    order = rng.permutation(NUM_UNIQUE)
    x, letters = x[order], letters[order]
    repeats = rng.choice(NUM_UNIQUE, NUM_DUPLICATES, replace=False)
    return np.concatenate([x, x[repeats]]), np.concatenate([letters, letters[repeats]])


def expected_parts(table) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The raw (unscaled) splits the loader should produce from the NUM_UNIQUE distinct rows."""
    x, letters = table
    y = np.array(["gqwzt".index(c) for c in letters[:NUM_UNIQUE]], dtype=np.int64)
    return three_way_split(x[:NUM_UNIQUE], y, stratify=False)


def write_arff(path: Path, x: np.ndarray, letters: np.ndarray, *,
               classes: str = "g,q,w,z,t") -> Path:
    """ARFF text as OpenML exports it: unprefixed numeric attributes and a nominal class."""
    lines = ["% hls4ml jets, synthetic", "@relation hls4ml_lhc_jets_hlf", ""]
    lines += [f"@attribute {name} numeric" for name in OPENML_FEATURES]
    lines += [f"@attribute class {{{classes}}}", "", "@data"]
    lines += [",".join([*map(number, row), str(c)]) for row, c in zip(x, letters)]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_parquet(path: Path, x: np.ndarray, letters: np.ndarray) -> Path:
    """Parquet with float32 feature columns and a dictionary-encoded class column."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    columns = {name: pa.array(x[:, i]) for i, name in enumerate(OPENML_FEATURES)}
    columns["class"] = pa.array(letters.tolist()).dictionary_encode()
    pq.write_table(pa.table(columns), path)
    return path


def write_hdf5(path: Path, x: np.ndarray, letters: np.ndarray, *, drop: str | None = None) -> Path:
    """hls4ml-style HDF5: compound dataset t_allpar_new with j_ features and one-hot j_g..j_t."""
    h5py = pytest.importorskip("h5py")
    names = [n for n in [*FEATURES, "j_pt", *(f"j_{c}" for c in CLASS_NAMES)] if n != drop]
    records = np.zeros(len(x), dtype=[(n, np.float32 if n != "j_t" else np.int32) for n in names])
    for i, name in enumerate(FEATURES):
        if name != drop:
            records[name] = x[:, i]
    records["j_pt"] = 500.0
    for c in CLASS_NAMES:
        records[f"j_{c}"] = letters == c
    with h5py.File(path, "w") as handle:
        handle.create_dataset("t_allpar_new", data=records)
        handle.create_dataset("other", data=np.arange(3))
    return path


WRITERS = {
    "arff": (write_arff, "hls4ml_lhc_jets_hlf.arff"),
    "csv": (write_csv, "hls4ml_lhc_jets_hlf.csv"),
    "parquet": (write_parquet, "hls4ml_lhc_jets_hlf.parquet"),
    "hdf5": (write_hdf5, "processed-pythia82-lhc13-all-pt1-50k-r1_h022_e0175_t220_nonu_truth.z"),
}


def options(data_dir: Path, *, cache: bool = False) -> DataOptions:
    """Offline options for `data_dir`."""
    return DataOptions(data_dir=data_dir, download=False, cache=cache)


def write_source(kind: str, folder: Path, table) -> Path:
    """One source file of `kind` in `folder`."""
    writer, name = WRITERS[kind]
    folder.mkdir(parents=True, exist_ok=True)
    return writer(folder / name, *table)


@pytest.fixture(scope="module")
def loaded(table, tmp_path_factory) -> dict:
    """The dataset loaded from each format (in data_dir/jsc for HDF5, data_dir for the rest)."""
    results = {}
    for kind in WRITERS:
        data_dir = tmp_path_factory.mktemp(kind)
        write_source(kind, data_dir / "jsc" if kind == "hdf5" else data_dir, table)
        results[kind] = load_jsc(options(data_dir))
    return results


@pytest.mark.parametrize("kind", list(WRITERS))
def test_shapes_dtypes_and_info(loaded, kind):
    dataset = loaded[kind]
    assert dataset.info.name == "jsc" and dataset.info.num_classes == 5
    assert dataset.info.num_features == 16 and dataset.info.image_size is None
    assert dataset.info.class_names == ("g", "q", "w", "z", "t")
    for split in (dataset.train, dataset.validation, dataset.test):
        assert split.x.dtype == torch.float32 and split.x.shape[1] == 16
        assert split.y.dtype == torch.int64 and split.transform is None


@pytest.mark.parametrize("kind", list(WRITERS))
def test_duplicates_dropped_and_split_sizes(loaded, kind):
    # 300 distinct rows: test = ceil(0.2 * 300) = 60; validation = ceil(0.125 * 240) = 30
    assert loaded[kind].sizes() == {"train": 210, "validation": 30, "test": 60}


@pytest.mark.parametrize("kind", list(WRITERS))
def test_class_mapping_is_g_q_w_z_t(loaded, kind):
    dataset = loaded[kind]
    labels = torch.cat([dataset.train.y, dataset.validation.y, dataset.test.y])
    assert torch.bincount(labels, minlength=5).tolist() == list(CLASS_COUNTS.values())


def test_all_formats_give_identical_tensors(loaded, table):
    reference = loaded["arff"]
    parts = expected_parts(table)
    for name in ("train", "validation", "test"):
        assert torch.equal(reference.split(name).y, torch.from_numpy(parts[name][1]))
        for kind, dataset in loaded.items():
            assert torch.equal(dataset.split(name).x, reference.split(name).x), kind
            assert torch.equal(dataset.split(name).y, reference.split(name).y), kind


def test_train_standardised_and_others_use_train_scaler(loaded, table):
    dataset, parts = loaded["csv"], expected_parts(table)
    train = dataset.train.x.double()
    assert torch.allclose(train.mean(0), torch.zeros(16, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(train.std(0, unbiased=False), torch.ones(16, dtype=torch.float64),
                          atol=1e-4)
    raw_train = parts["train"][0].astype(np.float64)
    mean, std = raw_train.mean(0), raw_train.std(0)
    for name in ("validation", "test"):
        expected = (parts[name][0] - mean) / std
        np.testing.assert_allclose(dataset.split(name).x.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert dataset.test.x.mean(0).abs().max() > 1e-3  # not re-standardised on its own


def test_validation_disjoint_from_train(loaded):
    dataset = loaded["parquet"]
    rows = {name: {row.tobytes() for row in dataset.split(name).x.numpy()}
            for name in ("train", "validation", "test")}
    assert len(rows["train"]) == 210 and len(rows["validation"]) == 30
    assert not rows["train"] & rows["validation"]
    assert not rows["train"] & rows["test"] and not rows["validation"] & rows["test"]


def test_csv_accepts_j_prefixed_feature_names(table, tmp_path):
    write_csv(tmp_path / "prefixed.csv", *table, names=list(FEATURES))
    assert load_jsc(options(tmp_path)).sizes()["train"] == 210


def test_cache_written_and_reused_without_reading_source(table, tmp_path):
    source = write_source("csv", tmp_path, table)
    first = load_jsc(options(tmp_path, cache=True))
    caches = list((tmp_path / "jsc" / ".cache").glob("hls4ml_lhc_jets_hlf-*.pt"))
    assert len(caches) == 1
    stat = source.stat()
    source.write_bytes(b"\0" * stat.st_size)  # same size and mtime: only the cache can answer
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = load_jsc(options(tmp_path, cache=True))
    for name in ("train", "validation", "test"):
        assert torch.equal(first.split(name).x, second.split(name).x)
        assert torch.equal(first.split(name).y, second.split(name).y)


def test_cache_rebuilt_when_source_changes_or_cache_is_corrupt(table, tmp_path):
    source = write_source("csv", tmp_path, table)
    first = load_jsc(options(tmp_path, cache=True))
    [cache] = (tmp_path / "jsc" / ".cache").glob("*.pt")
    cache.write_bytes(b"not a torch file")
    rebuilt = load_jsc(options(tmp_path, cache=True))
    assert torch.equal(rebuilt.train.x, first.train.x)
    assert cache.stat().st_size > 100  # rewritten
    x, letters = table
    write_csv(source, x[:200], letters[:200])
    os.utime(source, ns=(1_000_000_000, 1_000_000_000))
    changed = load_jsc(options(tmp_path, cache=True))
    assert len(changed.train) + len(changed.validation) + len(changed.test) == 200
    assert [p.name for p in (tmp_path / "jsc" / ".cache").glob("*.pt")] != [cache.name]
    assert len(list((tmp_path / "jsc" / ".cache").glob("*.pt"))) == 1  # stale one removed


def test_no_cache_written_when_disabled(table, tmp_path):
    write_source("csv", tmp_path, table)
    load_jsc(options(tmp_path))
    assert not (tmp_path / "jsc" / ".cache").exists()


def test_missing_data_names_the_directories(tmp_path, monkeypatch):
    monkeypatch.setenv("MACHOP_OFFLINE", "1")
    (tmp_path / "unrelated.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError) as info:
        load_jsc(options(tmp_path))
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path) in message and str(tmp_path / "jsc") in message
    assert "hls4ml_lhc_jets_hlf" in message and "MACHOP_DATA_DIR" in message
    assert "unrelated.csv" in message


def test_hdf5_without_the_table_is_skipped(table, tmp_path, monkeypatch):
    h5py = pytest.importorskip("h5py")
    monkeypatch.setenv("MACHOP_OFFLINE", "1")
    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle.create_dataset("something", data=np.arange(4))
    with pytest.raises(DataError, match="not found"):
        load_jsc(options(tmp_path))
    write_source("arff", tmp_path / "jsc", table)
    assert len(load_jsc(options(tmp_path)).test) == 60


def test_fetched_openml_table_is_saved_and_loaded(table, tmp_path, monkeypatch):
    from sklearn.utils import Bunch

    x, letters = table
    calls = []

    def fake_fetch(name, **kwargs):
        calls.append((name, kwargs))
        return Bunch(data=x.astype(np.float64), target=letters.astype(object),
                     feature_names=OPENML_FEATURES)

    monkeypatch.setattr("sklearn.datasets.fetch_openml", fake_fetch)
    dataset = load_jsc(DataOptions(data_dir=tmp_path, download=True, cache=False))
    assert calls[0][0] == "hls4ml_lhc_jets_hlf" and calls[0][1]["version"] == 1
    assert (tmp_path / "jsc" / "hls4ml_lhc_jets_hlf.csv").is_file()
    assert dataset.sizes() == {"train": 210, "validation": 30, "test": 60}


def test_failed_download_falls_through_to_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr("sklearn.datasets.fetch_openml", offline)
    with pytest.raises(DataError, match="OpenML download failed.*network unreachable") as info:
        load_jsc(DataOptions(data_dir=tmp_path, download=True))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kind", ["csv", "arff", "parquet", "hdf5"])
def test_missing_column_is_reported(table, tmp_path, kind):
    x, letters = table
    keep = [i for i, name in enumerate(FEATURES) if name != "j_c2_b1_mmdt"]
    if kind == "csv":
        path = write_csv(tmp_path / "t.csv", x[:, keep], letters,
                         names=[OPENML_FEATURES[i] for i in keep])
    elif kind == "arff":
        path = tmp_path / "t.arff"
        write_arff(path, x, letters)
        path.write_text(path.read_text().replace("@attribute c2_b1_mmdt numeric\n", "")
                        .replace("@attribute class", "@attribute extra numeric\n@attribute class"))
    elif kind == "parquet":
        pq = pytest.importorskip("pyarrow.parquet")
        path = write_parquet(tmp_path / "t.parquet", x, letters)
        pq.write_table(pq.read_table(path).drop(["c2_b1_mmdt"]), path)
    else:
        path = write_hdf5(tmp_path / "t.h5", x, letters, drop="j_c2_b1_mmdt")
    with pytest.raises(DataError, match=r"missing JSC column\(s\) j_c2_b1_mmdt") as info:
        load_jsc(options(tmp_path))
    assert path.name in str(info.value)


def test_missing_label_columns_are_reported(table, tmp_path):
    x, _ = table
    (tmp_path / "t.csv").write_text(",".join(OPENML_FEATURES) + "\n"
                                    + ",".join(map(number, x[0])) + "\n")
    with pytest.raises(DataError, match="missing JSC column.*class"):
        load_jsc(options(tmp_path))


@pytest.mark.parametrize("name, content", [
    ("broken.h5", b"\x89HDF\r\n\x1a\n" + b"\0" * 64),
    ("broken.z", b"definitely not hdf5"),
    ("broken.parquet", b"PAR1 truncated"),
    ("broken.arff", b"@relation x\n@attribute zlogz numeric\n@attribute class {g,q\n@data\n"),
    ("values.arff",
     b"@relation x\n@attribute zlogz numeric\n@attribute class {g,q}\n@data\nabc,g\n"),
])
def test_unreadable_file_is_reported(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match="cannot read") as info:
        load_jsc(options(tmp_path))
    assert name in str(info.value) and "\n" not in str(info.value)


def test_truncated_csv_is_reported(table, tmp_path):
    path = write_csv(tmp_path / "t.csv", *table)
    text = path.read_text()
    path.write_text(text[: len(text) // 2].rsplit(",", 3)[0] + "\n")  # last row cut short
    with pytest.raises(DataError, match="t.csv"):
        load_jsc(options(tmp_path))


def test_non_numeric_feature_is_reported(table, tmp_path):
    path = write_csv(tmp_path / "t.csv", *table)
    lines = path.read_text().splitlines()
    lines[5] = "oops" + lines[5][lines[5].index(","):]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="column 'zlogz' is not numeric"):
        load_jsc(options(tmp_path))


def test_missing_feature_value_is_reported(table, tmp_path):
    x, letters = table
    write_arff(tmp_path / "t.arff", x, letters)
    path = tmp_path / "t.arff"
    path.write_text(path.read_text().replace(number(x[3, 0]) + ",", "?,", 1))
    with pytest.raises(DataError, match="non-finite"):
        load_jsc(options(tmp_path))


@pytest.mark.parametrize("kind", ["csv", "arff"])
def test_unknown_class_label_is_reported(table, tmp_path, kind):
    x, letters = table
    letters = letters.copy()
    letters[10] = "h"
    if kind == "csv":
        write_csv(tmp_path / "t.csv", x, letters)
    else:
        write_arff(tmp_path / "t.arff", x, letters, classes="g,q,w,z,t,h")
    with pytest.raises(DataError, match="unknown class label.*'h'"):
        load_jsc(options(tmp_path))


def test_invalid_one_hot_rows_are_reported(table, tmp_path):
    h5py = pytest.importorskip("h5py")
    path = write_hdf5(tmp_path / "t.h5", *table)
    with h5py.File(path, "r+") as handle:
        records = handle["t_allpar_new"][()]
        records["j_g"][records["j_q"] == 1] = 1  # every q row also claims g
        handle["t_allpar_new"][...] = records
    with pytest.raises(DataError, match="exactly one of j_g"):
        load_jsc(options(tmp_path))


def test_too_few_rows_is_a_data_error(table, tmp_path):
    x, letters = table
    write_csv(tmp_path / "t.csv", x[:2], letters[:2])
    with pytest.raises(DataError, match="too few"):
        load_jsc(options(tmp_path))
