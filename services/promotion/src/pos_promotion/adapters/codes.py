"""The keyed hash a coupon is found by."""

from __future__ import annotations

import hashlib
import hmac


class CodeHasher:
    """HMAC-SHA256 under the service's secret, over the merchant and the normalized code:
    without the key a stolen table cannot be searched for codes, and the same code at two
    merchants hashes differently."""

    def __init__(self, key: str) -> None:
        self._key = key.encode()

    def __call__(self, merchant_id: str, normalized_code: str) -> bytes:
        return hmac.new(
            self._key, f"{merchant_id}\0{normalized_code}".encode(), hashlib.sha256
        ).digest()
