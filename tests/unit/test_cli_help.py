"""Help people can use (issue 18, point 9): a description and examples for every command and
subcommand, help text for every option, ``--version``, bare ``georep`` shows the help, and
printing help imports no boto3 (what made ``georep --help`` take a second)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from service.surfaces.cli import main, parser
from service.surfaces.commands import COMMANDS

ROOT = Path(__file__).resolve().parents[2]


def _parsers(
    top: argparse.ArgumentParser, name: str = "georep"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, top
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child_name, child in action.choices.items():
                yield from _parsers(child, f"{name} {child_name}")


def _modules_after(argv: list[str]) -> set[str]:
    """The modules a fresh interpreter has loaded once ``georep ARGV`` printed its help."""
    code = (
        "import sys\n"
        "from service.surfaces.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(sorted(sys.modules)), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(done.stderr.split())


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--help"], id="georep --help"),
        pytest.param([], id="georep"),
        *(pytest.param([c.NAME, "--help"], id=f"georep {c.NAME} --help") for c in COMMANDS),
        pytest.param(["dlq", "list", "--help"], id="georep dlq list --help"),
    ],
)
def test_printing_help_imports_neither_boto3_nor_the_demo(argv: list[str]) -> None:
    """boto3 alone took 0.14 s of ``georep --help``'s 0.8 s, the demo 0.4 s: help needs
    neither (checked by what is loaded, not by timing)."""
    loaded = _modules_after(argv)
    assert set() == {m for m in loaded if m.split(".")[0] in ("boto3", "botocore", "rich")}
    assert "service.surfaces.demo" not in loaded


def test_bare_georep_prints_the_help_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code = main([])
    out = capsys.readouterr().out
    assert 0 == code
    assert out.startswith("usage: georep")
    assert "examples:" in out


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert 0 == exit_.value.code
    assert f"georep {version('georep')}\n" == capsys.readouterr().out


def test_every_command_and_subcommand_has_a_description_examples_and_option_help() -> None:
    """Every parser (dlq list/show/replay, conflicts list and deploy render included) says
    what it does and shows examples; every option and argument has help text."""
    missing = []
    for name, each in _parsers(parser()):
        if not (each.description or "").strip():
            missing.append(f"{name}: no description")
        if "examples:" not in (each.epilog or ""):
            missing.append(f"{name}: no examples")
        for action in each._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert [] == missing


def test_the_demo_regions_begin_with_the_local_replica_sets() -> None:
    """The demo's option list is spelled out in the light command module; its first regions
    stay the local replica set's, so `--regions 3` is the set the tutorial uses."""
    from service.surfaces.commands.demo import DEMO_REGIONS
    from service.surfaces.local import REGIONS

    assert REGIONS == DEMO_REGIONS[: len(REGIONS)]
    assert len(set(DEMO_REGIONS)) == len(DEMO_REGIONS)
