"""The CLI is only a parser: each subcommand's options are exactly its stage function's keyword arguments."""

from __future__ import annotations

import importlib
import inspect

import pytest

from dualmd import cli


@pytest.mark.parametrize("name", sorted(cli.STAGES))
def test_subcommand_options_are_the_stage_functions_arguments(name):
    module, function = cli.STAGES[name][0].split(":")
    stage = getattr(importlib.import_module(f"dualmd.stages.{module}"), function)
    parser = cli._parser()
    sub = parser._subparsers._group_actions[0].choices[name]  # noqa: SLF001 - argparse has no public accessor
    dests = {a.dest for a in sub._actions if a.dest not in ("help", "threads")}
    params = {
        p.name
        for p in inspect.signature(stage).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    assert dests == params, name


def test_named_paths_become_a_mapping(monkeypatch):
    seen = {}

    def fake_score(**kwargs):
        seen.update(kwargs)

    monkeypatch.setattr("dualmd.stages.attack.score", fake_score)
    monkeypatch.setattr(cli, "set_threads", lambda n: seen.setdefault("threads", n))
    cli.main(
        [
            "attack",
            "--config",
            "c.yaml",
            "--attack",
            "loss",
            "--images",
            "i.npz",
            "--split",
            "s.npz",
            "--split-meta",
            "s.json",
            "--target",
            "baseline=m/baseline",
            "--target",
            "student=m/student",
            "--out-dir",
            "o",
            "--threads",
            "3",
        ]
    )
    assert seen["threads"] == 3
    assert {k: str(v) for k, v in seen["targets"].items()} == {
        "baseline": "m/baseline",
        "student": "m/student",
    }
    with pytest.raises(SystemExit):
        cli.main(["attack", "--target", "no-equals-sign"])
