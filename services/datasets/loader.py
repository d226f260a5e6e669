"""Load a labelled set from a spec such as ``homedepot:PATH``, ``esci:DIR``, ``qrels:DIR`` or
``pydocs`` (Python's standard-library documentation, built offline)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from services.datasets.base import LabelledSet
from services.datasets.esci import load_esci
from services.datasets.homedepot import load_homedepot
from services.datasets.pydocs import load_pydocs, stdlib_root
from services.datasets.qrels import load_qrels_dataset
from services.datasets.wands import load_wands
from services.errors import DatasetError

LOADERS: dict[str, Callable[[Path], LabelledSet]] = {
    "homedepot": load_homedepot,
    "esci": load_esci,
    "wands": load_wands,
    "qrels": load_qrels_dataset,
    "pydocs": load_pydocs,
}
DATA_DIR_ENV = "FLYWHEEL_DATA_DIR"
# Where each name lives inside a data directory (the layout of ../shared/data).
_DEFAULTS = {"homedepot": "homedepot/train.csv", "esci": "esci", "wands": "wands"}


def data_dirs() -> list[Path]:
    """Directories searched for bare names: ``$FLYWHEEL_DATA_DIR``, ``<repo>/../shared/data``."""
    dirs = [Path(d).expanduser() for d in [os.environ.get(DATA_DIR_ENV)] if d]
    return [*dirs, Path(__file__).resolve().parents[2].parent / "shared" / "data"]


def _default_path(name: str) -> Path:
    if name == "pydocs":  # built from this interpreter's own library, never downloaded
        return stdlib_root()
    relative = _DEFAULTS.get(name)
    candidates = [d / relative for d in data_dirs()] if relative else []
    for path in candidates:
        if path.exists():
            return path
    looked = ", ".join(str(p) for p in candidates) or "nowhere (this name has no default)"
    raise DatasetError(
        f"data set {name!r} has no path and none was found (looked in {looked}); "
        f"pass '{name}:PATH' or set {DATA_DIR_ENV} to the directory holding it."
    )


def load_dataset(spec: str) -> LabelledSet:
    """Load ``NAME:PATH`` where NAME is one of :data:`LOADERS` (``homedepot`` takes the
    ``train.csv`` path, the others a directory). A bare ``NAME`` is allowed when its data is
    found under ``$FLYWHEEL_DATA_DIR`` or ``<repo>/../shared/data`` (e.g. ``homedepot``), and
    for ``pydocs`` (this interpreter's standard library).

    Raises:
        DatasetError: unknown name (the message lists the known ones), no path found, or the
            data cannot be read.
    """
    name, sep, raw_path = spec.strip().partition(":")
    name = name.strip().lower()
    loader = LOADERS.get(name)
    if loader is None:
        raise DatasetError(
            f"unknown data set {name!r} in {spec!r}; use one of {', '.join(LOADERS)} "
            "as NAME:PATH (e.g. homedepot:../shared/data/homedepot/train.csv)."
        )
    path = Path(raw_path.strip()).expanduser() if sep and raw_path.strip() else _default_path(name)
    return loader(path)
