"""A missing JSC file is one line on stderr that says where to get it, whatever the download did."""

from __future__ import annotations

import sys
import warnings
from urllib.error import URLError

from machop.data.jsc import OPENML_NAME, OPENML_URL


def test_missing_jsc_file_is_one_line_with_its_download_address(cli, tmp_path, monkeypatch):
    def offline_fetch(*args, **kwargs):
        # what scikit-learn does without a network: warn on each retry, then give up
        warnings.warn(f"A network error occurred while downloading https://www.openml.org/api/v1/"
                      f"json/data/list/data_name/{OPENML_NAME}. Retrying...", UserWarning)
        raise URLError("[Errno -2] Name or service not known")

    def show_on_stderr(message, category, filename, lineno, file=None, line=None):
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    monkeypatch.delenv("MACHOP_OFFLINE", raising=False)
    monkeypatch.setattr("sklearn.datasets.fetch_openml", offline_fetch)
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show_on_stderr  # as Python shows warnings outside pytest
        result = cli("train", "jsc-tiny", "jsc", "--data-dir", tmp_path, "--project-dir", tmp_path)
    assert result.code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: JSC data not found")
    assert OPENML_URL in lines[0] and OPENML_NAME in lines[0] and str(tmp_path / "jsc") in lines[0]
    assert "OpenML download failed (URLError" in lines[0]
