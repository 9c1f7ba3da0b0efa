"""Entry point of a local rank that machop started itself: `python -m machop.cli.worker PAYLOAD`.

The payload holds the command (train or test) and the resolved config; this rank prints and
writes nothing; a user error is left beside the payload for rank 0 to print.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    """Run one rank of a `train` or `test` and return its exit status."""
    from machop import api
    from machop.config.schema import RunConfig
    from machop.console import configure_logging
    from machop.errors import MachopError
    from machop.train.distributed import write_rank_error

    payload = Path(argv[0])
    spec = json.loads(payload.read_text())
    config = RunConfig.model_validate(spec["config"])
    configure_logging("error")  # rank 0 reports warnings once
    try:
        {"train": api.train, "test": api.test}[spec["command"]](config)
    except MachopError as exc:
        write_rank_error(payload, str(exc))  # rank 0 prints it, once
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
