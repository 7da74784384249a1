"""The federation's own error, raised by the server app and by the commands that run it."""

from __future__ import annotations

from veilnet.errors import VeilnetError

__all__ = ["FederationError", "round_short"]


class FederationError(VeilnetError):
    """A federation did not complete: too few clients answered a round, or none the keyed step."""


def round_short(server_round: int, got: int, needed: int, failures: list[str]) -> FederationError:
    """The error of a round that got ``got`` of the ``needed`` clients' updates: one line with
    the round, the counts and the failed clients' distinct reasons."""
    reasons = "; ".join(sorted(set(failures)))[:300]
    return FederationError(f"round {server_round}: {got} of the {needed} clients needed sent an update{f' ({reasons})' if reasons else ''}")
