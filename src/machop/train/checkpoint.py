"""Checkpoints: machop's own format, Lightning .ckpt, plain state_dict .pt, pickled modules."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from machop.data.dataset import DatasetInfo
from machop.errors import CheckpointError
from machop.io_atomic import write_atomic

if TYPE_CHECKING:
    from machop.config.schema import RunConfig

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


def _field_error(path: Path, name: str, problem: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {str(path)!r} has a malformed {name!r} field: {problem}")


def _is_int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _dataset_info(path: Path, info: Any) -> DatasetInfo | None:
    if info is None:
        return None
    if not isinstance(info, dict):
        raise _field_error(path, "dataset_info", f"expected a table, got {type(info).__name__}")
    if not isinstance(info.get("name"), str):
        raise _field_error(path, "dataset_info", f"'name' must be a string, got {info.get('name')!r}")
    for key, minimum in (("num_classes", 1), ("num_features", 0)):
        if not _is_int(info.get(key), minimum):
            raise _field_error(path, "dataset_info", f"{key!r} must be an integer >= {minimum}, "
                                                     f"got {info.get(key)!r}")
    size = info.get("image_size")
    if size is not None and not (isinstance(size, (list, tuple)) and len(size) == 3
                                 and all(_is_int(n, 1) for n in size)):
        raise _field_error(path, "dataset_info", f"'image_size' must be 3 positive integers, got {size!r}")
    names = info.get("class_names")
    if names is not None and not (isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names)):
        raise _field_error(path, "dataset_info", f"'class_names' must be a list of strings, got {names!r}")
    return DatasetInfo.from_dict(info)


def _passes(path: Path, passes: Any) -> list[tuple[str, dict[str, Any]]]:
    if passes is None:
        return []
    if not isinstance(passes, (list, tuple)):
        raise _field_error(path, "passes", f"expected a list of [name, arguments], got {type(passes).__name__}")
    for index, entry in enumerate(passes):
        if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str)
                and isinstance(entry[1], dict)):
            raise _field_error(path, "passes", f"entry {index} must be [name, arguments], got {entry!r}")
    return [(name, args) for name, args in passes]


def _table(path: Path, obj: dict[str, Any], name: str) -> dict[str, Any]:
    value = obj.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _field_error(path, name, f"expected a table, got {type(value).__name__}")
    return value


def _machop_payload(path: Path, obj: dict[str, Any]) -> Checkpoint:
    """A machop-format payload, every field checked: the file may have been written by anything."""
    version = obj.get("version")
    if not _is_int(version, 1) or version > FORMAT_VERSION:
        raise _field_error(path, "version", f"expected {FORMAT_VERSION} or lower, got {version!r} "
                                            "(written by a newer machop?)")
    state = obj.get("state_dict")
    if state is None:
        raise CheckpointError(f"checkpoint {str(path)!r} has no 'state_dict' (the model weights)")
    if not (isinstance(state, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                            for k, v in state.items())):
        raise _field_error(path, "state_dict", "expected a table of parameter names to tensors, got "
                                               + (type(state).__name__ if not isinstance(state, dict)
                                                  else "non-tensor entries"))
    model = obj.get("model")
    if model is not None and not isinstance(model, str):
        raise _field_error(path, "model", f"expected a model name, got {model!r}")
    return Checkpoint(kind="machop", state_dict=state, model_name=model,
                      model_args=_table(path, obj, "model_args"),
                      dataset_info=_dataset_info(path, obj.get("dataset_info")),
                      config=_table(path, obj, "config"), passes=_passes(path, obj.get("passes")),
                      extra=_table(path, obj, "extra"))


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
        return _machop_payload(path, obj)
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


def _made_for(checkpoint: Checkpoint) -> str:
    """'<model> on <dataset>' as far as the checkpoint records them."""
    model = checkpoint.model_name or "an unnamed model"
    dataset = checkpoint.dataset_info.name if checkpoint.dataset_info is not None else "unknown data"
    return f"{model} on {dataset}"


def load_base_checkpoint(model: nn.Module, path: str | Path, *, model_name: str,
                         dataset: str) -> nn.Module:
    """Load the base checkpoint an earlier run left in a project folder into `model`.

    A project folder is named after the config's `project`, so a run of another model or
    dataset with the same config finds the first run's checkpoint there: that is refused with
    the way out (--project) rather than a bare list of shape mismatches.
    """
    path = Path(path)
    checkpoint = read_checkpoint(path)
    problem = _mismatch_message(path, model, checkpoint.state_dict)
    found = checkpoint.dataset_info.name if checkpoint.dataset_info is not None else None
    if problem is None and found in (None, dataset):
        model.load_state_dict(checkpoint.state_dict)
        return model
    detail = problem.split(": ", 1)[1] if problem else f"trained on {found!r}, not {dataset!r}"
    raise CheckpointError(f"project folder {str(path.parents[1])!r} holds the base checkpoint of "
                          f"another run ({_made_for(checkpoint)}; this run: {model_name} on "
                          f"{dataset}): {detail}; pass --project NAME to give this run a folder "
                          "of its own")


def _model_args_from(config: RunConfig, checkpoint: Checkpoint) -> dict[str, Any]:
    """The checkpoint's model_args when the config gives none; refused when both differ."""
    if not config.model_args:
        return {"model_args": dict(checkpoint.model_args)} if checkpoint.model_args else {}
    if checkpoint.model_args and config.model_args != checkpoint.model_args:
        raise CheckpointError(f"checkpoint {str(config.load_name)!r} was trained with model_args "
                          f"{checkpoint.model_args} but the config gives {config.model_args}: drop "
                          "[model_args] from the config (the checkpoint's are used) or load a "
                          "checkpoint trained with them")
    return {}


def fill_names_from_checkpoint(config: RunConfig, checkpoint: Checkpoint | None) -> RunConfig:
    """Take model and dataset names from a machop checkpoint when the config lacks them."""
    if checkpoint is None or checkpoint.kind != "machop":
        return config
    updates: dict[str, Any] = {}
    if config.model is None and checkpoint.model_name:
        updates["model"] = checkpoint.model_name
    if checkpoint.model_name and config.model in (None, checkpoint.model_name):
        updates.update(_model_args_from(config, checkpoint))
    if config.dataset is None and checkpoint.dataset_info is not None:
        updates["dataset"] = checkpoint.dataset_info.name
    return config.model_copy(update=updates) if updates else config
