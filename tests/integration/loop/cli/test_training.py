"""`pvar-loop train --arm`: a by-hand retrain finds the round of the arm it names (experiment arms share the
project's database), and its errors name the arm."""

from __future__ import annotations

from pathlib import Path

from loop.cli.app import main
from storage.statuses import RoundStatus
from tests.support.annotation_setup import make_round_items


def _cli(tmp_path: Path, monkeypatch, sqlite_url: str) -> list[str]:
    config = tmp_path / "pvar-loop.toml"
    config.write_text(f'[paths]\ndata_dir = "{tmp_path / "data"}"\n')
    monkeypatch.setenv("PVAR_LOOP_DATABASE_URL", sqlite_url)
    return ["--config", str(config)]


def test_train_finds_the_round_of_the_named_arm(uow, sqlite_url, tmp_path: Path, monkeypatch, capsys) -> None:
    make_round_items(uow, 2, status=RoundStatus.CANCELLED, arm="random", tag="r-")
    make_round_items(uow, 2, status=RoundStatus.PUSHED, arm="pvar", tag="p-")
    cli = _cli(tmp_path, monkeypatch, sqlite_url)

    assert main([*cli, "train"]) == 2  # the main arm has no round
    assert "no round has labels yet" in capsys.readouterr().err

    assert main([*cli, "train", "--arm", "random"]) == 2
    err = capsys.readouterr().err
    assert "round 1 of arm random is cancelled" in err and "never trained on" in err

    assert main([*cli, "train", "--arm", "pvar", "--round", "1"]) == 2
    err = capsys.readouterr().err
    assert "round 1 of arm pvar is pushed: its labels are not collected yet" in err
    assert "`pvar-loop round advance 1 --arm pvar`" in err

    assert main([*cli, "train", "--arm", "nosuch", "--round", "1"]) == 2
    assert "no round 1 of arm nosuch" in capsys.readouterr().err
