"""Run the agent as `python -m cloudchain.agent`."""

from .server import main

raise SystemExit(main())
