"""Checkpoints: machop's own format, Lightning .ckpt, plain state_dict .pt, pickled modules."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from machop.data.dataset import DatasetInfo
from machop.errors import CheckpointError
from machop.io_atomic import write_atomic

FORMAT = "machop-checkpoint"
FORMAT_VERSION = 1
LOAD_TYPES = ("auto", "pt", "pl", "mz", "machop")
LIGHTNING_PREFIX = "model."


@dataclass
class Checkpoint:
    """What a checkpoint file held, normalised: a state_dict or a whole module, plus metadata."""

    kind: str
    state_dict: dict[str, torch.Tensor] | None = None
    module: nn.Module | None = None
    model_name: str | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    dataset_info: DatasetInfo | None = None
    config: dict[str, Any] = field(default_factory=dict)
    passes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(path: str | Path, model: nn.Module, *, model_name: str,
                    dataset_info: DatasetInfo, config: dict[str, Any] | None = None,
                    model_args: dict[str, Any] | None = None,
                    passes: list[tuple[str, dict[str, Any]]] | None = None, **extra: Any) -> Path:
    """Write a machop checkpoint: state_dict, model name, dataset info, config, applied passes.

    Transformed models are stored as the base model plus the passes that rebuild them, so a
    checkpoint never pickles code.
    """
    payload = {"format": FORMAT, "version": FORMAT_VERSION, "model": model_name,
               "model_args": dict(model_args or {}), "dataset_info": dataset_info.as_dict(),
               "config": dict(config or {}), "passes": [list(p) for p in passes or []],
               "state_dict": model.state_dict(), "extra": extra}
    return write_atomic(path, lambda stream: torch.save(payload, stream))


def _read(path: Path, trust_pickle: bool) -> Any:
    """torch.load; returns None when the file needs full unpickling (a pickled module)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as exc:
        if not trust_pickle and "Weights only load failed" in str(exc):
            return None
        raise _corrupt(path, exc) from exc
    except ModuleNotFoundError as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} needs the Python module {exc.name!r} "
                              "to load; install it") from exc
    except Exception as exc:  # torch.load raises many types on damaged files
        raise _corrupt(path, exc) from exc


def _corrupt(path: Path, exc: BaseException) -> CheckpointError:
    detail = (str(exc).splitlines() or [""])[0][:120]
    return CheckpointError(f"checkpoint {str(path)!r} is corrupt or truncated "
                           f"({type(exc).__name__}: {detail})")


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _detect_kind(obj: Any) -> str:
    if isinstance(obj, nn.Module):
        return "mz"
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return "machop"
    if isinstance(obj, dict) and "state_dict" in obj:
        return "pl"
    if _is_state_dict(obj):
        return "pt"
    return "unknown"


def _strip_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if state_dict and all(key.startswith(LIGHTNING_PREFIX) for key in state_dict):
        return {key[len(LIGHTNING_PREFIX):]: value for key, value in state_dict.items()}
    return state_dict


def _normalise(path: Path, obj: Any, kind: str) -> Checkpoint:
    found = _detect_kind(obj)
    if kind == "mz" or found == "mz":
        if not isinstance(obj, nn.Module):
            raise CheckpointError(f"checkpoint {str(path)!r} holds no pickled model "
                                  f"(it looks like a {found!r} checkpoint; use --load-type {found})")
        return Checkpoint(kind="mz", module=obj)
    if kind == "pt":
        if not _is_state_dict(obj):
            raise CheckpointError(f"checkpoint {str(path)!r} is not a plain state_dict "
                                  f"(it looks like {found!r}; use --load-type auto)")
        return Checkpoint(kind="pt", state_dict=_strip_prefix(obj))
    if found == "machop":
        info = obj.get("dataset_info")
        return Checkpoint(kind="machop", state_dict=obj["state_dict"], model_name=obj.get("model"),
                          model_args=obj.get("model_args") or {},
                          dataset_info=DatasetInfo.from_dict(info) if info else None,
                          config=obj.get("config") or {},
                          passes=[(name, args) for name, args in obj.get("passes") or []],
                          extra=obj.get("extra") or {})
    if found == "pl":
        state = obj["state_dict"]
        if not _is_state_dict(state):
            raise CheckpointError(f"checkpoint {str(path)!r} has a malformed 'state_dict'")
        return Checkpoint(kind="pl", state_dict=_strip_prefix(state))
    if found == "pt":
        return Checkpoint(kind="pt", state_dict=_strip_prefix(obj))
    raise CheckpointError(f"checkpoint {str(path)!r} is not a machop, Lightning, state_dict "
                          "or pickled-model checkpoint")


def read_checkpoint(path: str | Path, load_type: str = "auto") -> Checkpoint:
    """Read any supported checkpoint into a normalised Checkpoint."""
    path = Path(path)
    if load_type not in LOAD_TYPES:
        raise CheckpointError(f"unknown load type {load_type!r} (valid: {', '.join(LOAD_TYPES)})")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    obj = _read(path, trust_pickle=load_type == "mz")
    if obj is None:  # needs full unpickling: a whole pickled module
        obj = _read(path, trust_pickle=True)
    return _normalise(path, obj, load_type)


def _mismatch_message(path: Path, model: nn.Module, state: dict[str, torch.Tensor] | None) -> str | None:
    state = state or {}
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} key(s) e.g. {missing[0]!r}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) e.g. {unexpected[0]!r}")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es) e.g. {shapes[0]}")
    if not parts:
        return None
    return f"checkpoint {str(path)!r} does not match the model: " + "; ".join(parts)


def apply_checkpoint(model: nn.Module, checkpoint: Checkpoint, path: str | Path) -> nn.Module:
    """Load the checkpoint's weights into `model` (or return its pickled module)."""
    if checkpoint.module is not None:
        return checkpoint.module
    problem = _mismatch_message(Path(path), model, checkpoint.state_dict)
    if problem:
        raise CheckpointError(problem)
    model.load_state_dict(checkpoint.state_dict)
    return model


def load_checkpoint(model: nn.Module, path: str | Path, load_type: str = "auto") -> nn.Module:
    """Read a checkpoint and load it into `model`; returns the loaded model."""
    return apply_checkpoint(model, read_checkpoint(path, load_type), path)
