"""Webhook secrets at rest: AES-256-GCM under the deployment's key (`DISPATCHER_SECRET_KEYS`).

The dispatcher must read a secret back to sign with it, so a hash will not do. Each ciphertext
starts with the id of the key that sealed it, so the deployment can add a new key in front
(new secrets use it) and keep the old ones behind it for the secrets they sealed. The
subscription's merchant and id are bound in as associated data: a ciphertext copied onto
another row does not open.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_ID_BYTES = 4
NONCE_BYTES = 12


class SecretBox:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one secret key is needed")
        self._keys = [(self._id(k), AESGCM(hashlib.sha256(k.encode()).digest())) for k in keys]

    @staticmethod
    def _id(key: str) -> bytes:
        return hashlib.sha256(b"key-id\0" + key.encode()).digest()[:KEY_ID_BYTES]

    def seal(self, secret: str, merchant_id: str, subscription_id: str) -> bytes:
        key_id, aead = self._keys[0]
        nonce = os.urandom(NONCE_BYTES)
        bound = f"{merchant_id}\0{subscription_id}".encode()
        return key_id + nonce + aead.encrypt(nonce, secret.encode(), bound)

    def open(self, sealed: bytes, merchant_id: str, subscription_id: str) -> str:
        key_id, nonce = sealed[:KEY_ID_BYTES], sealed[KEY_ID_BYTES : KEY_ID_BYTES + NONCE_BYTES]
        for candidate, aead in self._keys:
            if candidate == key_id:
                bound = f"{merchant_id}\0{subscription_id}".encode()
                plain = aead.decrypt(nonce, sealed[KEY_ID_BYTES + NONCE_BYTES :], bound)
                return plain.decode()
        raise LookupError("the key that sealed this secret is not configured")
