"""The whole flow without any web framework: the core over the in-memory store.

Run: python examples/core_only.py
"""

from __future__ import annotations

import asyncio

from otpcore import OTPAuth, Policy
from otpcore.domain.errors import RefreshReused, TokenRevoked
from otpcore.stores.memory import MemoryStore


async def main() -> None:
    inbox: dict[str, str] = {}

    async def send(email: str, code: str) -> None:
        inbox[email] = code  # a real app sends an e-mail here
        print(f"[sender] a code was sent to {email}")

    auth: OTPAuth[object] = OTPAuth(
        policy=Policy(secret=b"example-secret-that-is-32-bytes!"),
        store=MemoryStore(),
        sender=send,
    )
    await auth.request_code("Alice@Example.com")
    login = await auth.verify_code("alice@example.com", inbox["alice@example.com"])
    principal = await auth.authenticate(login.access_token)
    print(f"logged in as user {principal.claims.sub}, session {principal.claims.sid}")

    rotated = await auth.refresh(login.refresh_token)
    print("refresh rotated the refresh token:", rotated.refresh_token != login.refresh_token)
    try:
        await auth.refresh(login.refresh_token)
    except RefreshReused:
        print("presenting the old refresh token again was reuse: the session is revoked")
    try:
        await auth.authenticate(rotated.access_token)
    except TokenRevoked:
        print("...so even the newest access token of that session is refused")


if __name__ == "__main__":
    asyncio.run(main())
