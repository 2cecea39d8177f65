"""After a write through cchain, have the agent (if one is named) forget what changed, so its
readers see the write at once rather than at its next refresh. A failure only warns: the write
itself has succeeded."""

from __future__ import annotations

import argparse
import os

from .io import warn


def refresh_agent(args: argparse.Namespace, service: str, user: str | None = None) -> None:
    """Ask the agent of CLOUDCHAIN_AGENT to forget one secret (or, user None, one service)."""
    if getattr(args, "no_agent", False) or "CLOUDCHAIN_AGENT" not in os.environ:
        return
    from ..agent.client import AgentClient, AgentUnavailable
    from ..errors import CloudChainError

    try:
        agent = AgentClient.from_environment()
        if agent is not None:
            agent.refresh(service, user)
    except (AgentUnavailable, CloudChainError) as why:
        warn(f"the agent may serve the old value until its TTL: {why}")
