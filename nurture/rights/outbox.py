"""Erase a member's emails from the local outbox, the embedded mail backend's folder.

The outbox keeps a copy of every email it "sent", addressed by name and address: an erasure
removes those addressed to the member and rewrites the ``index.html`` listing.
"""

from __future__ import annotations

from email import policy as email_policy
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from pathlib import Path

from nurture.delivery.outbox_mailer import write_outbox_index
from nurture.delivery.suppression import normalise_address

__all__ = ["erase_from_outbox"]


def _recipients(path: Path) -> set[str]:
    head = bytearray()
    with path.open("rb") as handle:
        for line in handle:  # the header block only
            if line in (b"\r\n", b"\n"):
                break
            head += line
    headers = BytesHeaderParser(policy=email_policy.default).parsebytes(bytes(head))
    found: set[str] = set()
    for name in ("To", "Cc", "Bcc"):
        for value in headers.get_all(name, []):
            addresses = getattr(value, "addresses", None)
            if addresses is not None:
                found.update(normalise_address(a.addr_spec) for a in addresses if a.addr_spec)
            else:  # pragma: no cover - the default policy parses address headers
                found.update(normalise_address(a) for _, a in getaddresses([str(value)]) if a)
    return found


def erase_from_outbox(outbox_dir: Path | str, email: str) -> int:
    """Delete the outbox emails addressed to ``email``; rewrite the index when any was deleted.

    Args:
        outbox_dir: The outbox folder; a missing folder holds nothing.
        email: The address, in any case.

    Returns:
        How many ``.eml`` files were deleted.
    """
    folder = Path(outbox_dir)
    if not folder.is_dir():
        return 0
    address = normalise_address(email)
    removed = 0
    for path in sorted(folder.glob("*.eml")):
        if address in _recipients(path):
            path.unlink(missing_ok=True)
            removed += 1
    if removed:
        write_outbox_index(folder)
    return removed
