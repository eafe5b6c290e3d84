"""Optional, explicit download of a benchmark's public files (never called implicitly).

:func:`download_benchmark` fetches the URLs listed under ``download:`` in the benchmark's spec (pinned commits where
the source allows it) and checks their SHA-256 when the spec gives one. It needs network access; everything else in
:mod:`noisyclip_metrics.evaluation.benchmarks` works offline from local files.
"""

from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path

from noisyclip_metrics.errors import DataFileError, InputError
from noisyclip_metrics.evaluation.benchmarks.adapters import benchmark_spec
from noisyclip_metrics.io.safepath import safe_join

__all__ = ["download_benchmark"]


def download_benchmark(name: str, dest: str | Path, *, overwrite: bool = False, timeout: float = 60.0) -> list[Path]:
    """Download the files of benchmark ``name`` into the folder ``dest``.

    Args:
        name: a registered benchmark.
        dest: target folder (created if needed).
        overwrite: re-download files that already exist (otherwise existing files are only checksum-verified).
        timeout: seconds per request.

    Returns:
        The paths of the files, ready for ``load_benchmark(name, dest)``.

    Raises:
        InputError: the spec lists no downloadable files (its ``obtain`` text says how to get them).
        DataFileError: a checksum mismatch (the partial file is removed) or a failed request.
    """
    spec = benchmark_spec(name)
    if not spec.download:
        raise InputError(f"{name}: no download source in the spec. To obtain the files: {spec.obtain}")
    folder = Path(dest)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for item in spec.download:
        target = safe_join(folder, item.file, what=f"{name}: download file name")  # never outside dest
        if overwrite or not target.exists():
            try:
                with urllib.request.urlopen(item.url, timeout=timeout) as response:
                    data = response.read()
            except OSError as exc:
                raise DataFileError(
                    f"{item.url}: download failed ({exc}). To obtain the files: {spec.obtain}"
                ) from None
            target.write_bytes(data)
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        if item.sha256 and digest != item.sha256:
            target.unlink()
            raise DataFileError(f"{target}: SHA-256 {digest} does not match the spec's {item.sha256}; file removed")
        paths.append(target)
    return paths
