"""Parity of an exported model with machop's simulation: the same samples through both."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from machop.data.batches import iterate_batches
from machop.data.dataset import Dataset
from machop.export.request import ParityReport


def evaluation_inputs(dataset: Dataset, split: str, batch_size: int) -> np.ndarray:
    """Every input of `split` as the model sees it in evaluation (transforms applied), float32."""
    data = dataset.evaluation_split(split)
    batches = [xb.float().numpy() for xb, _ in iterate_batches(data, batch_size)]
    return np.concatenate(batches) if batches else np.zeros((0, *data.x.shape[1:]), np.float32)


@torch.no_grad()
def simulated_outputs(model: nn.Module, inputs: np.ndarray, batch_size: int) -> np.ndarray:
    """machop's simulated outputs (float64) for `inputs`, in batches, on the CPU, in eval mode."""
    was_training = model.training
    model.eval()
    outputs = [model(torch.from_numpy(inputs[start:start + batch_size])).double().numpy()
               for start in range(0, len(inputs), batch_size)]
    model.train(was_training)
    return np.concatenate(outputs) if outputs else np.zeros((0,), np.float64)


def compare_outputs(reference: np.ndarray, exported: np.ndarray) -> ParityReport:
    """Agreement of predicted classes and the size of the output differences, sample by sample."""
    reference = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    exported = np.asarray(exported, dtype=np.float64).reshape(len(exported), -1)
    if reference.shape != exported.shape:
        raise ValueError(f"outputs of shape {exported.shape} cannot be compared with {reference.shape}")
    samples = len(reference)
    diff = np.abs(reference - exported)
    differing = int(np.count_nonzero(diff.max(axis=1) > 0)) if samples else 0
    agreement = float(np.mean(reference.argmax(axis=1) == exported.argmax(axis=1))) if samples else 1.0
    return ParityReport(samples=samples, agreement=agreement,
                        max_abs_diff=float(diff.max()) if diff.size else 0.0,
                        differing_samples=differing, bit_exact=differing == 0)


def layer_row(name: str, reference: np.ndarray, exported: np.ndarray) -> dict[str, object]:
    """One per-layer parity row: how far one node's exported output is from its simulation."""
    reference = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    exported = np.asarray(exported, dtype=np.float64).reshape(len(exported), -1)
    diff = np.abs(reference - exported)
    return {"node": name, "max_abs_diff": float(diff.max()) if diff.size else 0.0,
            "differing_values": int(np.count_nonzero(diff)),
            "values": int(diff.size)}
