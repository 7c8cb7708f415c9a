"""Which team a new review task is routed to: the team's group is granted the
permission to resume it when the task is created."""

from __future__ import annotations

from tenants.models import Role, Team, Tenant


def review_team_for(*, tenant: Tenant, kind: str) -> str | None:
    """None means no team: only tenant admins and explicit grants may act."""
    if kind == "legal":
        return Team.REVIEWERS
    if kind == "finance":
        return Team.FINANCE
    if kind == "signoff":
        return Team.SENIOR if tenant.signoff_role == Role.SENIOR_REVIEWER else None
    raise ValueError(f"unknown review kind {kind!r}")
