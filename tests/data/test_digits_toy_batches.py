"""Bundled digits, synthetic toy-tiny, the registry and in-memory batching."""

from __future__ import annotations

import pytest
import torch

from machop.data import Split, iterate_batches, load_dataset, num_batches
from machop.errors import DataError


def test_digits_split_sizes_and_info():
    data = load_dataset("digits")
    assert data.sizes() == {"train": 1257, "validation": 180, "test": 360}
    assert data.info.num_features == 64 and data.info.image_size == (1, 8, 8)
    assert data.train.x.shape == (1257, 1, 8, 8) and data.train.y.dtype == torch.int64


def test_digits_is_stratified_and_standardised():
    data = load_dataset("digits")
    counts = torch.bincount(data.test.y, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    flat = data.train.x.flatten(1)
    varying = flat.std(0) > 0
    assert torch.allclose(flat.mean(0), torch.zeros(64), atol=1e-5)
    assert torch.allclose(flat[:, varying].std(0, unbiased=False), torch.ones(int(varying.sum())), atol=1e-4)


def test_digits_split_is_deterministic():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert torch.equal(a.test.x, b.test.x) and torch.equal(a.train.y, b.train.y)


def test_toy_tiny_labels_follow_the_rule():
    data = load_dataset("toy-tiny", seed=3)
    assert torch.equal(data.train.y, (data.train.x.sum(1) > 0).long())
    assert data.info.num_features == 4 and data.info.num_classes == 2


def test_unknown_dataset_suggests():
    with pytest.raises(DataError, match="did you mean 'digits'"):
        load_dataset("digit")


def test_batches_cover_every_sample_once():
    split = Split(torch.arange(10).float().unsqueeze(1), torch.arange(10))
    generator = torch.Generator().manual_seed(0)
    batches = list(iterate_batches(split, 4, shuffle=True, generator=generator))
    assert [len(y) for _, y in batches] == [4, 4, 2] == [4, 4, 2][:num_batches(split, 4)]
    seen = torch.cat([y for _, y in batches])
    assert sorted(seen.tolist()) == list(range(10))
    assert all(torch.equal(x.squeeze(1).long(), y) for x, y in batches)


def test_batches_drop_last_and_order():
    split = Split(torch.zeros(10, 1), torch.arange(10))
    assert [len(y) for _, y in iterate_batches(split, 4, drop_last=True)] == [4, 4]
    assert num_batches(split, 4, drop_last=True) == 2
    assert torch.cat([y for _, y in iterate_batches(split, 3)]).tolist() == list(range(10))


def test_shuffle_is_seeded():
    split = Split(torch.zeros(50, 1), torch.arange(50))
    def order(seed):
        gen = torch.Generator().manual_seed(seed)
        return torch.cat([y for _, y in iterate_batches(split, 7, shuffle=True, generator=gen)])
    assert torch.equal(order(1), order(1)) and not torch.equal(order(1), order(2))


def test_batch_transform_is_applied():
    split = Split(torch.ones(4, 2), torch.zeros(4, dtype=torch.long), transform=lambda x, g: x * 3)
    assert all(torch.equal(x, torch.full((2, 2), 3.0)) for x, _ in iterate_batches(split, 2))


def test_mismatched_split_lengths():
    with pytest.raises(DataError, match="3 inputs but 2 labels"):
        Split(torch.zeros(3, 1), torch.zeros(2))


def test_evaluation_split_drops_training_augmentation():
    from machop.data import Dataset, DatasetInfo

    x, y = torch.ones(4, 2), torch.zeros(4, dtype=torch.long)
    data = Dataset(DatasetInfo("d", 2, 2), Split(x, y, transform=lambda b, g: b * 5),
                   Split(x, y), Split(x, y), eval_transform=lambda b, g: b * 2)
    assert next(iterate_batches(data.evaluation_split("train"), 4))[0].max() == 2
    assert next(iterate_batches(data.split("train"), 4))[0].max() == 5
    assert data.evaluation_split("test") is data.test
