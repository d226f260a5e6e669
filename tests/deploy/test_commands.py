"""Every command line the images, compose and Kubernetes run is a README command with options
the real `flywheel` CLI accepts (parsed by click, not run)."""

from __future__ import annotations

import pytest
import typer.core
import typer.exceptions
import typer.main

from tests.deploy.manifests import (
    KUSTOMIZATIONS,
    compose,
    compose_command,
    containers,
    effective,
    exec_form,
    pod_spec,
    readme_commands,
    render,
)

pytestmark = pytest.mark.integration


def command_lines() -> dict[str, list[str]]:
    """Where → the arguments after `flywheel`."""
    lines = {
        f"Dockerfile {image}": exec_form(effective(image, "CMD") or "[]")
        for image in ("serve", "train")
    }
    for name, service in compose()["services"].items():
        command = compose_command(service)
        if command and str(service.get("image", "")).startswith("flywheel:"):
            lines[f"compose {name}"] = command
    for kustomization in KUSTOMIZATIONS:
        for obj in render(kustomization):
            spec = pod_spec(obj)
            for container in containers(spec or {}):
                if "/flywheel:" in container["image"] and "command" not in container:
                    where = f"k8s {kustomization} {obj['kind']}/{obj['metadata']['name']}"
                    lines[where] = [str(a) for a in container["args"]]
    return lines


def flywheel_group() -> typer.core.TyperGroup:
    """The CLI as `flywheel` builds it."""
    from flywheel_cli.main import app

    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    return group


def parse(group: typer.core.TyperGroup, args: list[str]) -> dict[str, object]:
    """Parse `flywheel ARGS` as the CLI would, without running it; bad input raises."""
    name, *rest = args
    with group.make_context("flywheel", list(args)) as parent:
        command = group.get_command(parent, name)
        assert command is not None, f"flywheel has no command {name!r}"
        params: dict[str, object] = command.make_context(name, rest, parent=parent).params
    return params


LINES = command_lines()


def test_every_place_is_covered() -> None:
    places = " ".join(LINES)
    for expected in ("Dockerfile serve", "Dockerfile train", "compose retrainer", "k8s base"):
        assert expected in places


@pytest.mark.parametrize("where", sorted(LINES))
def test_command_is_documented_and_parses(where: str) -> None:
    args = LINES[where]
    assert args, f"{where}: no command"
    assert args[0] in readme_commands(), f"{where}: `flywheel {args[0]}` is not in the README"
    parse(flywheel_group(), args)


def test_parse_refuses_unknown_options() -> None:
    """Guards the guard."""
    group = flywheel_group()
    with pytest.raises(typer.exceptions.TyperException, match="No such option"):
        parse(group, ["retrain", "--evry", "6h"])
    with pytest.raises(typer.exceptions.TyperException, match="integer"):
        parse(group, ["serve", "--port", "eighty"])
    assert parse(group, ["retrain", "--every", "6h", "--metrics-port", "9465"]) == {
        "every": "6h",
        "metrics_port": 9465,
    }
