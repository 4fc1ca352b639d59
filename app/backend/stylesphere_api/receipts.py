"""Order receipts: plain text, kept as files on the shared file system when there is one.

With SHARED_FILES_DIR (the instances' EFS mount) a receipt is written once at
checkout to receipts/<orderId>.txt, so any instance can serve it, even one whose
store does not hold the order (process-memory carts). Beside it,
<orderId>.owner holds a SHA-256 of the cart id that placed the order, so only
that browser gets it. Both are written to a temporary name and renamed: a reader
never sees half a file, and the receipt appears only after its owner file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def owner_digest(cart_id: str) -> str:
    return hashlib.sha256(cart_id.encode()).hexdigest()


def render(order: dict) -> str:
    def money(cents: int) -> str:
        return f"{cents / 100:,.2f} {order['currency']}"

    lines = ["StyleSphere - order receipt", "", f"Order:  {order['id']}", f"Placed: {order['createdAt']}", ""]
    width = max([len(l["name"]) for l in order["lines"]] + [20])
    for line in order["lines"]:
        lines.append(f"{line['quantity']:>2} x {line['name']:<{width}}  "
                     f"{money(line['unitPriceCents'] * line['quantity']):>14}")
    lines += ["", f"{'Total':<{width + 5}}  {money(order['totalCents']):>14}", "",
              "Thank you for shopping sustainably.", ""]
    return "\n".join(lines)


class Receipts:
    def __init__(self, shared_dir: str):
        self.dir = Path(shared_dir) / "receipts" if shared_dir else None

    def _write(self, path: Path, text: str) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            with_suppress_unlink(tmp)
            raise

    def save(self, order: dict) -> None:
        if self.dir is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write(self.dir / f"{order['id']}.owner", owner_digest(order["owner"]) + "\n")
        self._write(self.dir / f"{order['id']}.txt", render(order))

    def load(self, order_id: str, cart_id: str) -> str | None:
        """The stored receipt if it exists and belongs to this cart, else None."""
        if self.dir is None:
            return None
        try:
            owner = (self.dir / f"{order_id}.owner").read_text().strip()
            text = (self.dir / f"{order_id}.txt").read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return text if owner == owner_digest(cart_id) else None


def with_suppress_unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
