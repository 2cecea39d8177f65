"""Run the agent as `python -m cloudchain.agent`."""

from .main import main

raise SystemExit(main())
