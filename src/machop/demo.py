"""Compare a trained machop project with scikit-learn's MLPClassifier on the same split."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from machop.cli.console import out, print_error, print_metrics
from machop.config import load_config
from machop.errors import MachopError


def hidden_sizes(model) -> tuple[int, ...]:
    """Output widths of every Linear layer but the last: the MLP's hidden sizes."""
    from torch import nn

    widths = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
    return tuple(widths[:-1])


def sklearn_baseline(config_path: Path, seed: int) -> tuple[dict[str, float], tuple[int, ...]]:
    """Test metrics of MLPClassifier with the same hidden sizes, trained on the same train split."""
    import torch
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from machop.api import prepare
    from machop.metrics.classification import classification_metrics

    prepared = prepare(load_config(config_path, load_name=None))
    data = prepared.dataset
    sizes = hidden_sizes(prepared.model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=sizes, random_state=seed, max_iter=500)
        clf.fit(data.train.x.flatten(1).numpy(), data.train.y.numpy())
    proba = clf.predict_proba(data.test.x.flatten(1).numpy())
    logits = torch.log(torch.from_numpy(proba).clamp_min(1e-12))
    return classification_metrics(logits, data.test.y, data.info.num_classes), sizes


def main(argv: list[str] | None = None) -> int:
    """Print machop's test metrics beside MLPClassifier's for a finished project."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("project", type=Path, help="project folder written by `machop train`")
    args = parser.parse_args(argv)
    try:
        config_path = args.project / "config.toml"
        metrics_path = args.project / "test_metrics.json"
        if not config_path.is_file() or not metrics_path.is_file():
            raise MachopError(f"{args.project} has no config.toml and test_metrics.json; "
                              "run `machop train` and `machop test` first")
        ours = json.loads(metrics_path.read_text())["test"]
        config = load_config(config_path)
        baseline, sizes = sklearn_baseline(config_path, config.seed)
    except MachopError as exc:
        print_error(str(exc))
        return 2
    print_metrics(f"{config.model} vs MLPClassifier{sizes} on the {config.dataset} test split",
                  {f"machop {config.model}": ours, "sklearn MLPClassifier": baseline})
    verdict = "matches or beats" if ours["accuracy"] >= baseline["accuracy"] else "is below"
    out.print(f"machop {verdict} scikit-learn: accuracy {ours['accuracy']:.4f} "
              f"vs {baseline['accuracy']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
