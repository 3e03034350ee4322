"""Secrets at rest: AES-256-GCM with a key id on every sealed value, so keys can be rotated."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


@dataclass(frozen=True)
class Sealed:
    key_id: str
    nonce: bytes
    ciphertext: bytes


class SecretBox:
    """Seals with the current key; opens with whichever known key sealed the value."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys or any(len(k) != 32 for k in keys):
            raise ValueError("secret keys must be 32 bytes each")
        self._keys = {self.key_id(k): AESGCM(k) for k in keys}
        self._current_key = keys[0]
        self.current = self.key_id(keys[0])

    @property
    def key_ids(self) -> set[str]:
        return set(self._keys)

    def derive(self, label: bytes) -> bytes:
        """A sub-key for another purpose (e.g. keyed request hashes), from the current key."""
        return hmac.new(self._current_key, b"hyphae-derive:" + label, hashlib.sha256).digest()

    @staticmethod
    def key_id(key: bytes) -> str:
        return hashlib.sha256(b"hyphae-key-id:" + key).hexdigest()[:12]

    def seal(self, plaintext: bytes, context: bytes) -> Sealed:
        nonce = os.urandom(12)
        return Sealed(self.current, nonce, self._keys[self.current].encrypt(nonce, plaintext, context))

    def open(self, sealed: Sealed, context: bytes) -> bytes:
        aead = self._keys.get(sealed.key_id)
        if aead is None:
            raise KeyError(f"secret sealed with unknown key id {sealed.key_id}; add that key to HYPHAE_SECRET_KEY")
        return aead.decrypt(sealed.nonce, sealed.ciphertext, context)

    @classmethod
    def from_settings(cls, secret_key: str | None, data_dir: Path) -> SecretBox:
        """HYPHAE_SECRET_KEY holds comma-separated base64 keys, the first one current; else a local key file."""
        if secret_key:
            return cls([base64.b64decode(part) for part in secret_key.split(",") if part.strip()])
        path = data_dir / "secret.key"
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(base64.b64encode(os.urandom(32)).decode())
            try:
                os.link(tmp, path)  # atomic: the first process to get here wins, the others read its key
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        return cls([base64.b64decode(path.read_text().strip())])


def config_context(org_id: str, key: str) -> bytes:
    """Associated data binding an org-config value to its org and key: a row copied elsewhere does not decrypt."""
    return f"{org_id}\0{key}".encode()
