# mypy: ignore-errors
"""The floor: the flow's HTTP shape with no authentication behind it (``bench/bench_flows.py``).

The same routes, methods, JSON bodies (validated by pydantic models, the e-mail address by
``EmailStr``), headers and response sizes as the otpcore app's flow, served the same way (one
uvicorn worker, default loop and HTTP implementation, no access log) and driven by the same
client, but no store, no code, no token: request-otp prints a fixed code where ``send_otp``
prints one, verify-otp and refresh answer fixed strings as long as otpcore's tokens, the
current-user route checks only that a bearer header is present. What it reaches is the most
any library can reach on FastAPI with this client on this machine: the ceiling against which
the issue's targets are read.

Served by ``python -m uvicorn floor_app:make_app --factory --app-dir bench/flow_apps``.
"""

from typing import Any

import _instrument
from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel, EmailStr

#: otpcore's tokens are about this long (HS256, its claims); the floor answers as much.
_TOKEN = "x" * 300
#: As long as otpcore's ``challenge_id``; the client sends it back with the code.
_ID = "c" * 43


class _Email(BaseModel):
    email: EmailStr


class _Verify(BaseModel):
    email: EmailStr
    code: str
    challenge_id: str | None = None


class _Refresh(BaseModel):
    refresh_token: str


def _tokens() -> dict[str, Any]:
    return {
        "access_token": _TOKEN,
        "refresh_token": _TOKEN,
        "token_type": "bearer",
        "expires_in": 3600,
    }


def make_app() -> FastAPI:
    """The floor app: the flow's routes, answering fixed bodies."""
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/auth/request-otp")
    async def request_otp(body: _Email) -> dict[str, Any]:
        print(f"OTP for {body.email}: 123456\n", end="")
        return {
            "message": "If the address is registered, a code has been sent.",
            "challenge_id": _ID,
        }

    @app.post("/auth/verify-otp")
    async def verify_otp(body: _Verify) -> dict[str, Any]:
        return _tokens()

    @app.get("/me")
    async def me(authorization: str | None = Header(default=None)) -> dict[str, Any]:
        if not authorization or not authorization.startswith("Bearer "):
            raise HTTPException(status_code=401, detail="not_authenticated")
        return {"user_id": "1", "email": "flow@example.com"}

    @app.post("/auth/refresh")
    async def refresh(body: _Refresh) -> dict[str, Any]:
        return _tokens()

    @app.post("/auth/logout")
    async def logout(body: _Refresh) -> dict[str, Any]:
        return {"message": "Logged out"}

    _instrument.add_routes(app, "fastapi")
    return app
