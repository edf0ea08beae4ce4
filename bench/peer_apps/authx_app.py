# mypy: ignore-errors
# Runs only in bench/.venv-peers (AuthX is no dependency of the project), so the project's
# mypy run cannot resolve these imports.
"""AuthX as its documentation sets it up: stateless, or with its documented token blocklist.

From the AuthX docs ("Basic Usage" and "Token Blocklist"): an ``AuthXConfig`` with the
secret and ``JWT_TOKEN_LOCATION=["headers"]``, ``auth.handle_errors(app)``, a ``/login`` that
returns ``auth.create_access_token(uid=...)``, and ``/protected`` behind
``Depends(auth.access_token_required)``. The blocklist variant registers the documented
in-memory blocklist (a ``set`` checked by ``set_callback_token_blocklist``) and its
``/logout``.

The docs write ``/protected`` as a plain ``def``, which FastAPI runs in its thread pool; that
form is served as ``/protected-sync``. ``/protected`` is ``async def`` like our routes and the
unauthenticated ``/ping``, so the ratio counts the token check, not a thread hop.

Served by: ``uvicorn --factory bench.peer_apps.authx_app:make_stateless_app`` (or
``make_blocklist_app``).
"""

from authx import AuthX, AuthXConfig
from fastapi import Depends, FastAPI, HTTPException, Request

SECRET = "bench-secret-" + "x" * 40


def _make_app(*, blocklist: bool) -> FastAPI:
    app = FastAPI()
    config = AuthXConfig(JWT_SECRET_KEY=SECRET, JWT_TOKEN_LOCATION=["headers"])
    auth = AuthX(config=config)
    auth.handle_errors(app)

    if blocklist:
        # The documented in-memory blocklist.
        revoked: set[str] = set()

        @auth.set_callback_token_blocklist
        def is_token_revoked(token: str) -> bool:
            return token in revoked

        @app.post("/logout", dependencies=[Depends(auth.access_token_required)])
        async def logout(request: Request):
            token = await auth.get_access_token_from_request(request)
            revoked.add(token.token)
            return {"message": "Logged out"}

    @app.post("/login")
    def login(username: str, password: str):
        if username == "bench" and password == "bench":
            return {"access_token": auth.create_access_token(uid=username)}
        raise HTTPException(401, detail="Invalid credentials")

    @app.get("/protected", dependencies=[Depends(auth.access_token_required)])
    async def protected():
        return {"message": "Hello World"}

    @app.get("/protected-sync", dependencies=[Depends(auth.access_token_required)])
    def protected_sync():
        return {"message": "Hello World"}

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"status": "ok"}

    return app


def make_stateless_app() -> FastAPI:
    """AuthX checking the access token only: no revocation."""
    return _make_app(blocklist=False)


def make_blocklist_app() -> FastAPI:
    """AuthX with the documented in-memory token blocklist."""
    return _make_app(blocklist=True)
