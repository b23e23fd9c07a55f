"""Password hashing for reviewer accounts (argon2id), used by the review store and the sign-in routes.

A leaf module: it imports nothing of the web package, so :mod:`.db` and :mod:`.auth` can both use it
without importing each other. Like the rest of the web package it needs the ``web`` extra (argon2-cffi).
"""
from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
_DUMMY = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (argon2-cffi's default parameters)."""
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches the ``stored`` hash; with no hash, the same work against a dummy."""
    try:
        return _hasher.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False
