"""The one error the lab raises: which part failed and why."""

from __future__ import annotations


class LabError(Exception):
    """`part` names the piece of the lab (network, stable, haproxy, prometheus...)."""

    def __init__(self, part: str, reason: str) -> None:
        super().__init__(f"{part}: {reason}")
        self.part = part
        self.reason = reason
