"""What every strict rule set shares: AWS-shaped refusals, and why AWS refuses."""

from __future__ import annotations


class _Http:
    def __init__(self, status):
        self.status_code = status
        self.headers = {}
        self.content = b""


ORDER, LINGERING = "order", "lingering"


def refuse(code: str, message: str, kind: str = ORDER, status: int = 400):
    """An AWS error response. `kind` says why AWS refuses: ORDER, something the tool should have
    deleted first still exists (a teardown-order bug); LINGERING, AWS itself still holds it for a
    while after its owner was deleted (the tool must wait and retry)."""
    return _Http(status), {"Error": {"Code": code, "Message": message},
                           "ResponseMetadata": {"HTTPStatusCode": status}, "kind": kind}
