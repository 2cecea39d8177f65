"""The installed cchain: a generated value goes only where it is asked to, and --due's exit
code tells a cron job or CI step that something is due."""

from __future__ import annotations

from support import Emulator

from cloudchain import CloudChain


def test_generate_show_then_due_exits_5_for_an_expired_value(emulator: Emulator) -> None:
    row = ("-e", "billing", "-u", "db")
    made = emulator.run(*row, "--save", "--generate", "--charset", "alnum", "--length", "40",
                        "--show", "--not-after", "2020-01-01", "--rotate-every", "90d")  # fmt: skip
    value = made.out.rstrip("\n")
    assert made.code == 0 and len(value) == 40 and value.isalnum(), made.err
    assert value not in made.err and "saved billing/db version 1" in made.err
    assert CloudChain(endpoint_url=emulator.url).read("billing", "db") == value
    due = emulator.run("--due", "--json")
    assert due.code == 5, due.err
    assert '"user": "db"' in due.out and '"why": "not-after"' in due.out and value not in due.out
