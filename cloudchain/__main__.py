"""Run the cchain CLI as `python -m cloudchain`."""

from .cli import run

run()
