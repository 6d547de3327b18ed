"""`python -m tiergate_auth.keygen FILE`: write a new Ed25519 signing key (PKCS#8 PEM, 0600)."""

from __future__ import annotations

import os
import sys

from tiergate_auth.signing import generate_pem


def main(argv: list[str]) -> int:
    """Write the key to argv[1]; refuse to overwrite."""
    if len(argv) != 2:
        print("usage: python -m tiergate_auth.keygen FILE", file=sys.stderr)
        return 2
    try:
        fd = os.open(argv[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        print(f"keygen: {exc}", file=sys.stderr)
        return 1
    with os.fdopen(fd, "wb") as out:
        out.write(generate_pem())
    print(f"wrote {argv[1]}; add it to signing_keys with a new kid")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
