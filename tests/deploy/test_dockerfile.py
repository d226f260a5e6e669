"""deploy/Dockerfile, read statically (no Docker engine here): targets, user, entrypoints."""

from __future__ import annotations

import json
import re

import pytest

from tests.deploy.manifests import (
    DOCKERFILE,
    DOCKERIGNORE,
    ROOT,
    dockerfile_stages,
    effective,
    exec_form,
    readme_commands,
    stage_chain,
)

pytestmark = pytest.mark.integration

IMAGES = {"serve": ["serve"], "train": ["retrain"]}


def test_targets_exist_and_serve_is_the_default() -> None:
    stages = dockerfile_stages()
    assert {"serve", "train"} <= set(stages)
    assert list(stages)[-1] == "serve", "a plain `docker build` must give the serving image"


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_runs_as_non_root(image: str) -> None:
    user = effective(image, "USER")
    assert user is not None, f"{image}: no USER, the image would run as root"
    name = user.split(":")[0]
    assert name not in {"root", "0"}
    # Numeric, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
    assert name.isdigit() and int(name) >= 1000
    uid = f"--uid {name}"
    assert any(uid in run for s in stage_chain(image) for run in s.all("RUN")), (
        f"{image}: user {name} is never created (useradd {uid})"
    )


@pytest.mark.parametrize(("image", "cmd"), sorted(IMAGES.items()))
def test_entrypoint_and_cmd_are_readme_commands(image: str, cmd: list[str]) -> None:
    entrypoint = effective(image, "ENTRYPOINT")
    default = effective(image, "CMD")
    assert entrypoint is not None and default is not None
    assert exec_form(entrypoint) == ["flywheel"]
    assert exec_form(default) == cmd
    assert exec_form(default)[0] in readme_commands()


def pip_installs(build: str) -> list[str]:
    """The `pip install` commands of a build stage and the stages below it."""
    runs = [run for stage in stage_chain(build) for run in stage.all("RUN")]
    return [
        part.strip()
        for run in runs
        for part in run.split("&&")
        if re.search(r"\bpip install\b", part) and "--upgrade pip" not in part
    ]


def test_serve_image_has_no_extras_and_train_image_has_them() -> None:
    serve = pip_installs("build-serve")
    assert serve == ["/opt/flywheel/bin/pip install ."], "serve: the project without extras"
    train = " ".join(pip_installs("build-train"))
    assert '".[train,eval]"' in train
    assert '"torch==${TORCH_VERSION}"' in train
    # The runtime stages take exactly their own build's virtual environment.
    for image, build in (("serve", "build-serve"), ("train", "build-train")):
        copies = dockerfile_stages()[image].all("COPY")
        assert f"--from={build} /opt/flywheel /opt/flywheel" in copies


def test_torch_pin_matches_the_makefile() -> None:
    pinned = re.search(r'pip install --quiet "torch==([\d.]+)"', (ROOT / "Makefile").read_text())
    arg = re.search(r"ARG TORCH_VERSION=([\d.]+)", DOCKERFILE.read_text())
    assert pinned and arg and pinned[1] == arg[1]


def test_serve_healthcheck_probes_healthz() -> None:
    check = effective("serve", "HEALTHCHECK")
    assert check is not None and "/healthz" in check
    assert effective("train", "HEALTHCHECK") is None


def test_copied_sources_exist_and_pass_the_dockerignore() -> None:
    ignore = DOCKERIGNORE.read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore, "the context admits only what the images copy"
    for stage in dockerfile_stages().values():
        for copy in stage.all("COPY"):
            if copy.startswith("--from"):
                continue
            *sources, _ = copy.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                assert source.rstrip("/") in allowed, f"{source} is excluded by the dockerignore"


def test_every_package_is_copied() -> None:
    """The wheel built in the image holds every package pyproject.toml declares."""
    copied = {
        c.split()[0]
        for s in dockerfile_stages().values()
        for c in s.all("COPY")
        if "--from" not in c
    }
    declared = {"services", "encoder_server", "feedback_ingest", "retrainer", "flywheel_cli"}
    assert declared <= copied
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(r"include = (\[.*?\])", text)
    assert match
    include = json.loads(match[1])
    assert {p.rstrip("*") for p in include} == declared
