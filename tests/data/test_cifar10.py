"""CIFAR-10 loader and batched image transforms, on small pickles written in the real format."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.helpers.cifar10 import (
    NUM_TRAIN,
    PER_BATCH,
    image_ids,
    images,
    labels,
    write_batch,
    write_batches,
)

from machop.data import cifar10
from machop.data.cifar10 import CLASS_NAMES, MEAN, STD, load_cifar10
from machop.data.dataset import DataOptions
from machop.data.image_transforms import (
    make_image_transform,
    normalise,
    random_crop_with_padding,
    random_horizontal_flip,
)
from machop.errors import DataError


def offline(data_dir: Path) -> DataOptions:
    """Options that never download."""
    return DataOptions(data_dir=data_dir, download=False)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Loaded from data_dir/cifar-10-batches-py."""
    data_dir = tmp_path_factory.mktemp("cifar")
    write_batches(data_dir / "cifar-10-batches-py")
    return load_cifar10(offline(data_dir))


def test_shapes_dtypes_and_info(dataset):
    assert dataset.sizes() == {"train": 90, "validation": 10, "test": PER_BATCH}
    for split in (dataset.train, dataset.validation, dataset.test):
        assert split.x.dtype == torch.uint8 and split.x.shape[1:] == (3, 32, 32)
        assert split.y.dtype == torch.int64
    info = dataset.info
    assert (info.name, info.num_classes, info.num_features) == ("cifar10", 10, 3072)
    assert info.image_size == (3, 32, 32) and info.class_names == CLASS_NAMES
    assert dataset.eval_transform is dataset.test.transform is dataset.validation.transform
    assert dataset.train.transform is not dataset.eval_transform


def test_test_split_keeps_file_order_and_pixel_layout(dataset):
    assert image_ids(dataset.test.x) == list(range(1000, 1000 + PER_BATCH))
    assert dataset.test.y.tolist() == labels(1000, PER_BATCH)
    raw = images(1000, PER_BATCH)  # channel-major rows: R plane, G plane, B plane
    assert dataset.test.x[4, 1, 5, 7].item() == raw[4, 1024 + 5 * 32 + 7]
    assert torch.equal(dataset.test.x.reshape(PER_BATCH, -1), torch.from_numpy(raw))


def test_validation_carved_from_train(dataset):
    train_ids, val_ids = image_ids(dataset.train.x), image_ids(dataset.validation.x)
    assert not set(train_ids) & set(val_ids)
    assert sorted(train_ids + val_ids) == list(range(NUM_TRAIN))
    assert train_ids == sorted(train_ids) and val_ids == sorted(val_ids)
    all_labels = labels(0, NUM_TRAIN)
    assert dataset.train.y.tolist() == [all_labels[i] for i in train_ids]
    assert dataset.validation.y.tolist() == [all_labels[i] for i in val_ids]
    expected_val = torch.randperm(NUM_TRAIN, generator=torch.Generator().manual_seed(42))[:10]
    assert val_ids == sorted(expected_val.tolist())


def test_split_is_fixed_whatever_the_seed(tmp_path):
    write_batches(tmp_path, meta=False)  # batches directly in data_dir, no batches.meta
    a = load_cifar10(DataOptions(data_dir=tmp_path, download=False, seed=0))
    b = load_cifar10(DataOptions(data_dir=tmp_path, download=False, seed=123))
    assert torch.equal(a.validation.x, b.validation.x)
    assert a.info.class_names == CLASS_NAMES


def test_validation_is_ten_percent_of_the_real_size():
    train, val = cifar10.validation_split(50_000)
    assert len(val) == 5000 and len(train) == 45_000
    assert len(cifar10.validation_split(5)[1]) == 1


def test_normalisation_is_exact_for_a_known_pixel(dataset):
    x = dataset.test.x[:2].clone()
    x[1, :, 3, 9] = torch.tensor([200, 0, 255], dtype=torch.uint8)
    out = dataset.eval_transform(x, None)
    assert out.dtype == torch.float32 and out.shape == x.shape
    for channel, value in enumerate((200, 0, 255)):
        expected = ((torch.tensor(value, dtype=torch.float32) / 255)
                    - torch.tensor(MEAN[channel])) / torch.tensor(STD[channel])
        assert out[1, channel, 3, 9].item() == expected.item()
        assert out[1, channel, 3, 9].item() == pytest.approx((value / 255 - MEAN[channel])
                                                             / STD[channel], abs=1e-6)
    assert MEAN == (0.4914, 0.4822, 0.4465) and STD == (0.2470, 0.2435, 0.2616)


def crop_offset(output: torch.Tensor, image: torch.Tensor, padding: int) -> list[tuple[int, int]]:
    """Every (row, col) offset at which `output` is a window of the zero-padded `image`."""
    c, h, w = image.shape
    padded = torch.zeros(c, h + 2 * padding, w + 2 * padding, dtype=image.dtype)
    padded[:, padding:padding + h, padding:padding + w] = image
    return [(r, s) for r in range(2 * padding + 1) for s in range(2 * padding + 1)
            if torch.equal(padded[:, r:r + h, s:s + w], output)]


def random_images(n: int, seed: int = 0) -> torch.Tensor:
    """Random uint8 images; distinct content makes crop offsets and flips identifiable."""
    return torch.randint(1, 256, (n, 3, 32, 32), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def test_random_crop_is_a_window_of_the_padded_image():
    x = random_images(64)
    out = random_crop_with_padding(x, 4, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    offsets = []
    for i in range(len(x)):
        found = crop_offset(out[i], x[i], 4)
        assert len(found) == 1, i
        offsets.append(found[0])
    assert len(set(offsets)) > 10  # offsets differ per sample
    assert {r for r, _ in offsets} | {s for _, s in offsets} <= set(range(9))
    assert torch.equal(random_crop_with_padding(x, 0, None), x)


def test_random_flip_flips_exactly_the_chosen_samples():
    x = random_images(64, seed=2)
    out = random_horizontal_flip(x, torch.Generator().manual_seed(3))
    chosen = torch.rand(64, generator=torch.Generator().manual_seed(3)) < 0.5
    for i in range(64):
        assert torch.equal(out[i], x[i].flip(-1) if chosen[i] else x[i])
    assert 0 < int(chosen.sum()) < 64
    assert torch.equal(random_horizontal_flip(x, None, p=0.0), x)
    assert torch.equal(random_horizontal_flip(x, None, p=1.0), x.flip(-1))


def test_same_seed_same_augmentation(dataset):
    x = dataset.train.x[:32]
    transform = dataset.train.transform
    a = transform(x, torch.Generator().manual_seed(5))
    b = transform(x, torch.Generator().manual_seed(5))
    c = transform(x, torch.Generator().manual_seed(6))
    assert a.dtype == torch.float32 and a.shape == x.shape
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert transform(x, None).shape == x.shape


def test_train_transform_is_crop_then_flip_then_normalise():
    x = random_images(16, seed=4)
    generator, reference = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    out = make_image_transform(MEAN, STD, augment=True, padding=4)(x, generator)
    expected = normalise(random_horizontal_flip(random_crop_with_padding(x, 4, reference),
                                                reference), MEAN, STD)
    assert torch.equal(out, expected)


def test_transforms_are_picklable(dataset):
    restored = pickle.loads(pickle.dumps(dataset.train.transform))
    x = dataset.train.x[:4]
    assert torch.equal(restored(x, torch.Generator().manual_seed(0)),
                       dataset.train.transform(x, torch.Generator().manual_seed(0)))


def make_archive(path: Path, source: Path, *, extra: dict[str, bytes] | None = None) -> Path:
    """A tar.gz holding `source` as cifar-10-batches-py/, plus raw extra members."""
    with tarfile.open(path, "w:gz") as tar:
        tar.add(source, arcname="cifar-10-batches-py")
        for name, content in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


def test_archive_is_extracted_and_matches_folder(dataset, tmp_path):
    write_batches(tmp_path / "src")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    make_archive(data_dir / "cifar-10-python.tar.gz", tmp_path / "src")
    from_archive = load_cifar10(offline(data_dir))
    assert (data_dir / "cifar-10-batches-py" / "test_batch").is_file()
    assert not [p for p in data_dir.iterdir() if p.name.startswith(".")]  # staging removed
    for name in ("train", "validation", "test"):
        assert torch.equal(from_archive.split(name).x, dataset.split(name).x)
        assert torch.equal(from_archive.split(name).y, dataset.split(name).y)


@pytest.mark.parametrize("member", ["../escaped.txt", "/tmp/absolute-cifar-test.txt",
                                    "cifar-10-batches-py/../../escaped.txt"])
def test_archive_with_unsafe_member_is_refused(tmp_path, member):
    write_batches(tmp_path / "src")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    archive = make_archive(data_dir / "cifar-10-python.tar.gz", tmp_path / "src",
                           extra={member: b"gotcha"})
    with pytest.raises(DataError, match="unsafe path") as info:
        load_cifar10(offline(data_dir))
    assert str(archive) in str(info.value)
    assert not (tmp_path / "escaped.txt").exists()
    assert not Path("/tmp/absolute-cifar-test.txt").exists()
    assert not (data_dir / "cifar-10-batches-py").exists()


def test_archive_with_symlink_is_refused(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with tarfile.open(data_dir / "cifar-10-python.tar.gz", "w:gz") as tar:
        link = tarfile.TarInfo("cifar-10-batches-py/test_batch")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(DataError, match="not a regular file"):
        load_cifar10(offline(data_dir))


def test_truncated_archive_is_reported(tmp_path):
    write_batches(tmp_path / "src")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    archive = make_archive(data_dir / "cifar-10-python.tar.gz", tmp_path / "src")
    archive.write_bytes(archive.read_bytes()[:5000])
    with pytest.raises(DataError, match="cannot read tar.gz archive"):
        load_cifar10(offline(data_dir))


def test_missing_files_name_the_directories(tmp_path, monkeypatch):
    monkeypatch.setenv("MACHOP_OFFLINE", "1")
    with pytest.raises(DataError) as info:
        load_cifar10(offline(tmp_path))
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert str(tmp_path / "cifar-10-python.tar.gz") in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message


def test_incomplete_folder_counts_as_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("MACHOP_OFFLINE", "1")
    folder = write_batches(tmp_path / "cifar-10-batches-py")
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="CIFAR-10 not found"):
        load_cifar10(offline(tmp_path))


def test_failed_download_is_reported(tmp_path, monkeypatch):
    import urllib.error
    import urllib.request

    def unreachable(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    with pytest.raises(DataError, match="download of .* failed.*no route to host") as info:
        load_cifar10(DataOptions(data_dir=tmp_path, download=True))
    assert "\n" not in str(info.value)
    assert not list(tmp_path.iterdir())  # no partial archive left behind


def test_downloaded_archive_is_checked_and_used(tmp_path, monkeypatch):
    import hashlib
    import urllib.request

    write_batches(tmp_path / "src")
    payload = make_archive(tmp_path / "archive.tar.gz", tmp_path / "src").read_bytes()
    seen = []

    def fake_urlopen(url, timeout):
        seen.append((url, timeout))
        return io.BytesIO(payload)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    data_dir = tmp_path / "data"
    with pytest.raises(DataError, match="checksum mismatch"):
        load_cifar10(DataOptions(data_dir=data_dir, download=True))
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", hashlib.md5(payload).hexdigest())
    loaded = load_cifar10(DataOptions(data_dir=data_dir, download=True))
    assert seen[-1] == (cifar10.ARCHIVE_URL, 30)
    assert (data_dir / "cifar-10-python.tar.gz").read_bytes() == payload
    assert loaded.sizes() == {"train": 90, "validation": 10, "test": PER_BATCH}


def test_truncated_pickle_is_reported(tmp_path):
    folder = write_batches(tmp_path / "cifar-10-batches-py")
    path = folder / "data_batch_2"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="data_batch_2") as info:
        load_cifar10(offline(tmp_path))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("data, label_list, match", [
    (np.zeros((PER_BATCH, 3000), np.uint8), [0] * PER_BATCH, r"shape \(20, 3000\)"),
    (np.zeros((PER_BATCH, 3072), np.float32), [0] * PER_BATCH, "dtype float32"),
    (np.zeros((PER_BATCH, 3072), np.uint8), [0] * (PER_BATCH - 1), "labels have shape"),
    (np.zeros((PER_BATCH, 3072), np.uint8), [10] * PER_BATCH, r"labels outside 0\.\.9"),
])
def test_malformed_batch_is_reported(tmp_path, data, label_list, match):
    folder = write_batches(tmp_path / "cifar-10-batches-py")
    write_batch(folder / "test_batch", data, label_list)
    with pytest.raises(DataError, match=match) as info:
        load_cifar10(offline(tmp_path))
    assert "test_batch" in str(info.value)


def test_batch_without_data_key_is_reported(tmp_path):
    folder = write_batches(tmp_path / "cifar-10-batches-py")
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"labels": [1]}, protocol=2))
    with pytest.raises(DataError, match="data_batch_1.*no 'data' entry"):
        load_cifar10(offline(tmp_path))


class Sneaky:
    """Would run code on unpickling if the loader trusted arbitrary globals."""

    def __reduce__(self):
        return (print, ("pwned",))


def test_pickle_with_foreign_objects_is_refused(tmp_path):
    folder = write_batches(tmp_path / "cifar-10-batches-py")
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Sneaky()}))
    with pytest.raises(DataError, match="test_batch.*unexpected object builtins.print"):
        load_cifar10(offline(tmp_path))


def test_python3_pickles_with_str_keys_and_array_labels_load(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": images(0, 10), "labels": np.arange(10, dtype=np.int64)}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))
    loaded = load_cifar10(offline(tmp_path))
    assert loaded.sizes() == {"train": 45, "validation": 5, "test": 10}


def test_pickles_naming_the_old_numpy_core_module_load(tmp_path):
    # the official batches were written by Python 2 numpy, which names numpy.core, not numpy._core
    folder = write_batches(tmp_path / "cifar-10-batches-py")
    path = folder / "test_batch"
    legacy = path.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in legacy
    path.write_bytes(legacy)
    assert image_ids(load_cifar10(offline(tmp_path)).test.x) == list(range(1000, 1000 + PER_BATCH))
