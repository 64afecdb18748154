from pathlib import Path

from mimood_train.cli import COMMANDS, main

PARITY_CHECKPOINT = Path(__file__).resolve().parents[2] / "Tests" / "Fixtures" / "parity" / "checkpoint"


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in COMMANDS)


def test_unknown_command_is_named(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_commands_reach_their_modules(capsys):
    assert main(["checkpoint", "verify", str(PARITY_CHECKPOINT)]) == 0
    assert "ok: parity-fixture" in capsys.readouterr().out
