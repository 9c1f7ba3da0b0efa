"""CIFAR-10 from the official python pickle batches: 60,000 32x32 RGB images, 10 classes."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np
import torch

from machop.data.dataset import DataOptions, Dataset, DatasetInfo, Split
from machop.data.file_errors import DataNotFound, reading
from machop.data.image_transforms import make_image_transform
from machop.errors import DataError, exception_line
from machop.io_atomic import write_atomic

BATCHES_DIR = "cifar-10-batches-py"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
DOWNLOAD_TIMEOUT_S = 30
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck")
IMAGE_SIZE = (3, 32, 32)
PIXELS = 3 * 32 * 32
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
VALIDATION_FRACTION = 0.1
VALIDATION_SEED = 42
CROP_PADDING = 4
INFO = DatasetInfo(name="cifar10", num_classes=len(CLASS_NAMES), num_features=PIXELS,
                   image_size=IMAGE_SIZE, class_names=CLASS_NAMES)

# The batches hold only dicts, lists, bytes and numpy arrays, so nothing else may be imported.
ALLOWED_PICKLE_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("builtins", "bytes"), ("__builtin__", "bytes"),
})


def load_cifar10(options: DataOptions) -> Dataset:
    """CIFAR-10 as uint8 tensors; 10% of train carved out for validation; transforms normalise."""
    folder = find_batches(options)
    train_x, train_y = read_batches([folder / name for name in TRAIN_FILES])
    test_x, test_y = read_batches([folder / TEST_FILE])
    train_index, validation_index = validation_split(len(train_y))
    train_transform = make_image_transform(MEAN, STD, augment=True, padding=CROP_PADDING)
    eval_transform = make_image_transform(MEAN, STD, augment=False)
    return Dataset(
        info=replace(INFO, class_names=read_class_names(folder)),
        train=Split(train_x[train_index], train_y[train_index], train_transform),
        validation=Split(train_x[validation_index], train_y[validation_index], eval_transform),
        test=Split(test_x, test_y, eval_transform),
        eval_transform=eval_transform)


# ---------------------------------------------------------------- finding the files


def find_batches(options: DataOptions) -> Path:
    """The folder holding every batch file, extracting (or downloading) the archive if needed."""
    data_dir = Path(options.data_dir)
    folders = [data_dir / BATCHES_DIR, data_dir]
    for folder in folders:
        if not missing_batches(folder):
            return folder
    archive = data_dir / ARCHIVE_NAME
    download_note = "downloads disabled (download=False or MACHOP_OFFLINE set)"
    if not archive.is_file() and options.download:
        download_note = download_archive(archive)
    if archive.is_file():
        extract_archive(archive, data_dir)
        missing = missing_batches(folders[0])
        if missing:
            raise DataError(f"{archive} does not contain {BATCHES_DIR}/{', '.join(missing)}")
        return folders[0]
    raise DataNotFound(not_found_message(folders, archive, download_note))


def missing_batches(folder: Path) -> list[str]:
    """Names of the batch files that `folder` lacks."""
    return [name for name in (*TRAIN_FILES, TEST_FILE) if not (folder / name).is_file()]


def not_found_message(folders: list[Path], archive: Path, download_note: str) -> str:
    """One line: where we looked and how to provide the files."""
    looked = " and ".join(str(folder) for folder in folders)
    return (f"CIFAR-10 not found: looked for data_batch_1..5 and {TEST_FILE} in {looked} and for "
            f"{archive}; {download_note}; download {ARCHIVE_URL} into {folders[1]} (or extract "
            f"it there), or set data_dir / MACHOP_DATA_DIR")


def download_archive(target: Path) -> str:
    """Fetch the official archive to `target` via a temp file; returns a note for errors."""
    import urllib.request

    def copy_checked(stream: IO[bytes]) -> None:
        digest = hashlib.md5()
        with urllib.request.urlopen(ARCHIVE_URL, timeout=DOWNLOAD_TIMEOUT_S) as response:
            while chunk := response.read(1 << 20):
                stream.write(chunk)
                digest.update(chunk)
        if digest.hexdigest() != ARCHIVE_MD5:
            raise DataError(f"checksum mismatch (md5 {digest.hexdigest()})")

    try:
        write_atomic(target, copy_checked)
    except Exception as exc:  # no network, HTTP errors, bad payload: report and fall through
        return f"download of {ARCHIVE_URL} failed ({exception_line(exc)})"
    return "downloaded"


def extract_archive(archive: Path, data_dir: Path) -> None:
    """Safely unpack the batch folder from `archive` into `data_dir` (temp folder, then move)."""
    staging = Path(tempfile.mkdtemp(prefix=".cifar-10-extract-", dir=data_dir))
    try:
        with reading(archive, "tar.gz archive"):
            with tarfile.open(archive, "r:gz") as tar:
                members = safe_members(tar, archive)
                extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(staging, members=members, **extra)
            extracted = staging / BATCHES_DIR
            if not extracted.is_dir():
                raise DataError(f"{archive} does not contain a {BATCHES_DIR}/ folder")
            target = data_dir / BATCHES_DIR
            target.mkdir(exist_ok=True)
            for item in extracted.iterdir():
                os.replace(item, target / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def safe_members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    """Every member, refusing absolute paths, `..`, links and special files."""
    members = tar.getmembers()
    for member in members:
        path = PurePosixPath(member.name.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or ":" in member.name:
            raise DataError(f"{archive}: refusing to extract unsafe path {member.name!r}")
        if not (member.isfile() or member.isdir()):
            raise DataError(f"{archive}: refusing to extract {member.name!r} (not a regular file)")
    return members


# ---------------------------------------------------------------- reading the batches


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that builds containers and numpy arrays but imports nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        """Resolve only the numpy reconstruction helpers a CIFAR batch needs."""
        if (module, name) not in ALLOWED_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a CIFAR-10 batch")
        return super().find_class(module, name)


def unpickle(path: Path) -> Any:
    """A pickled batch with Python 2 strings kept as bytes."""
    with reading(path, "CIFAR-10 batch"), open(path, "rb") as stream:
        return ArrayUnpickler(stream, encoding="bytes").load()


def entry(batch: dict, key: str, path: Path) -> Any:
    """`batch[key]` under its bytes (Python 2) or str name."""
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    raise DataError(f"{path}: not a CIFAR-10 batch (no {key!r} entry)")


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as uint8 images (N, 3, 32, 32) and int64 labels (N,)."""
    batch = unpickle(path)
    if not isinstance(batch, dict):
        raise DataError(f"{path}: not a CIFAR-10 batch (holds {type(batch).__name__}, not a dict)")
    data = np.asarray(entry(batch, "data", path))
    labels = np.asarray(entry(batch, "labels", path))
    if data.ndim != 2 or data.shape[1] != PIXELS or data.shape[0] == 0:
        raise DataError(f"{path}: data has shape {data.shape}, expected (N, {PIXELS}) with N > 0")
    if data.dtype != np.uint8:
        raise DataError(f"{path}: data has dtype {data.dtype}, expected uint8")
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise DataError(f"{path}: labels have shape {labels.shape} and dtype {labels.dtype}, "
                        f"expected {len(data)} integers")
    if labels.min() < 0 or labels.max() >= len(CLASS_NAMES):
        raise DataError(f"{path}: labels outside 0..{len(CLASS_NAMES) - 1}")
    return data.reshape(-1, *IMAGE_SIZE), labels.astype(np.int64)


def read_batches(paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """Several batch files concatenated in order, as tensors."""
    parts = [read_batch(path) for path in paths]
    x = np.concatenate([images for images, _ in parts])
    y = np.concatenate([labels for _, labels in parts])
    return torch.from_numpy(x), torch.from_numpy(y)


def read_class_names(folder: Path) -> tuple[str, ...]:
    """Class names from `batches.meta` when present, else the standard CIFAR-10 names."""
    path = folder / META_FILE
    if not path.is_file():
        return CLASS_NAMES
    meta = unpickle(path)
    names = entry(meta, "label_names", path) if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != len(CLASS_NAMES):
        raise DataError(f"{path}: expected a dict with {len(CLASS_NAMES)} label_names")
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names)


def validation_split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation) indices: a fixed 10% (at least 1) held out, both in original order."""
    if n < 2:
        raise DataError(f"CIFAR-10 training batches hold {n} image(s); need at least 2")
    n_validation = max(1, int(n * VALIDATION_FRACTION))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(VALIDATION_SEED))
    return order[n_validation:].sort().values, order[:n_validation].sort().values
