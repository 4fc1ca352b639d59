"""What the tool knows about an AWS resource it made: the tag keys it writes on every one, and the
`Resource` a step hands the engine. A leaf module: the engine, the steps, the stack's shape and the
account-wide view all read these, and it imports none of them."""

from __future__ import annotations

from dataclasses import dataclass, field

TAG_STACK = "provision:stack"
TAG_STEP = "provision:step"
TAG_CREATED_AT = "provision:created-at"
TAG_OWNER = "provision:owner"            # the caller identity (ARN) that created the resource
TAG_EXPIRES_AT = "provision:expires-at"  # UTC time after which `reap` deletes the stack, or "never"
TAG_ROSTER = "provision:roster"          # the class roster a fleet stack was made from
TAG_STUDENT = "provision:student"        # the roster row's student (email, else name or id)
# Facts about a resource's creation: set once, never "corrected" by a later run (another user's
# `up` does not make them the owner).
FIRST_VALUE_TAGS = (TAG_CREATED_AT, TAG_OWNER)


@dataclass
class Resource:
    """A live AWS resource as a step sees it. `attrs` is what the state file keeps (small,
    JSON-safe: what outputs and dependent steps need); `raw` is the describe result."""

    id: str
    attrs: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict, repr=False)

    def to_state(self) -> dict:
        return {"id": self.id, "attrs": self.attrs}
