"""Building settings is cheap: no law check and no Hypothesis on the hot path (a Lambda cold
start, each GeorepTable); a user rule's laws are checked once, by the explicit step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import resolvers.checker
from service.config import parse_config
from service.errors import LawViolation
from service.surfaces.cli import main

ROOT = Path(__file__).resolve().parents[2]


def doc(resolver: str, **options: Any) -> dict[str, Any]:
    return {
        "table": {
            "name": "orders",
            "partition_key": "pk",
            "resolver": resolver,
            "resolver_options": options,
        },
        "regions": [{"name": "eu-west-1"}, {"name": "us-east-1"}],
    }


def _modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code`` (no network)."""
    script = textwrap.dedent(code) + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_settings_and_sdk_tables_for_lww_and_version_counter_do_not_import_hypothesis() -> None:
    """The Lambda handler module, settings for ``lww`` and ``version-counter``, and a
    GeorepTable leave Hypothesis unimported (it costs ~0.1 s of every cold start)."""
    loaded = _modules_after(
        """
        import boto3
        import service.surfaces.lambda_handler
        from service.config import parse_config
        from service.surfaces.sdk import GeorepTable
        regions = [{"name": "eu-west-1"}, {"name": "us-east-1"}]
        for resolver, options in (("lww", {}), ("version-counter", {"attribute": "v"})):
            config = parse_config({
                "table": {"name": "orders", "partition_key": "pk", "resolver": resolver,
                          "resolver_options": options},
                "regions": regions,
            })
            config.settings()
            client = boto3.client(
                "dynamodb", region_name="eu-west-1", endpoint_url="http://127.0.0.1:9",
                aws_access_key_id="x", aws_secret_access_key="x",
            )
            GeorepTable(client, config=config, region="eu-west-1")
        """
    )
    assert "service.surfaces.lambda_handler" in loaded
    assert set() == {m for m in loaded if m == "hypothesis" or m.startswith("hypothesis.")}


def test_building_settings_for_a_rule_does_not_import_hypothesis() -> None:
    """A lawful user rule is loaded without importing the law checker."""
    loaded = _modules_after(
        """
        from service.config import parse_config
        parse_config({
            "table": {"name": "orders", "partition_key": "pk", "resolver": "rules",
                      "resolver_options": {"rule": "tests.property.example_rules:union_tags"}},
            "regions": [{"name": "eu-west-1"}, {"name": "us-east-1"}],
        }).settings()
        """
    )
    assert "tests.property.example_rules" in loaded
    assert "hypothesis" not in loaded


def test_building_settings_for_a_rule_does_not_run_the_law_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """settings() for a ``rules`` resolver never calls the checker (a spy records every call),
    so even an unlawful rule loads there; the explicit check_laws=True refuses it with its
    minimal counterexample."""
    calls: list[object] = []
    real_check = resolvers.checker.check

    def spy(resolver: Any, **kwargs: Any) -> None:
        calls.append(resolver)
        real_check(resolver, **kwargs)

    monkeypatch.setattr(resolvers.checker, "check", spy)
    config = parse_config(doc("rules", rule="tests.property.example_rules:local_wins"))

    assert "rules" == config.settings().resolver.name
    assert [] == calls

    with pytest.raises(LawViolation) as refused:
        config.settings(check_laws=True)
    assert 1 == len(calls)
    assert "commutative" == refused.value.law


def _toml(tmp_path: Path, options: str) -> Path:
    path = tmp_path / "georep.toml"
    path.write_text(
        f'[table]\nname = "orders"\npartition_key = "pk"\nresolver = "rules"\n'
        f"resolver_options = {options}\n\n"
        '[[regions]]\nname = "eu-west-1"\n\n[[regions]]\nname = "us-east-1"\n'
    )
    return path


def test_georep_check_rule_refuses_an_unlawful_rule_with_its_minimal_counterexample(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The explicit deploy-time step exits 1 (a check found a problem) naming the broken law
    and the two versions."""
    path = _toml(tmp_path, '{ rule = "tests.property.example_rules:local_wins" }')

    assert 1 == main(["check-rule", "-c", str(path)])

    err = capsys.readouterr().err
    assert "is not commutative" in err
    assert 2 == err.count(" hlc=")


def test_georep_check_rule_accepts_a_lawful_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _toml(tmp_path, '{ rule = "tests.property.example_rules:union_tags" }')

    assert 0 == main(["check-rule", "-c", str(path)])

    assert "union_tags" in capsys.readouterr().out


def test_georep_check_rule_checks_a_rule_named_on_the_command_line_without_a_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "nowhere.toml")
    assert 1 == main(["check-rule", "tests.property.example_rules:local_wins", "-c", missing])
    assert "is not commutative" in capsys.readouterr().err
    assert 0 == main(["check-rule", "tests.property.example_rules:union_tags", "-c", missing])


def test_georep_check_rule_reports_in_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 18, point 10: check-rule refused --json; its verdict is one JSON document."""
    import json

    missing = str(tmp_path / "none.toml")
    capsys.readouterr()
    assert 1 == main(
        ["check-rule", "tests.property.example_rules:local_wins", "-c", missing, "--json"]
    )
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert ("fails a law", "tests.property.example_rules:local_wins") == (
        summary["result"],
        summary["rule"],
    )
    assert summary["law"] and summary["counterexample"]
