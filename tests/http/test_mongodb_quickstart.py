"""The reference README's MongoDB Quick Start runs unchanged, and so does the example app.

The Quick Start is kept below as published (steps 1-5), with the import changed to
``otpcore_fastapi``, the Motor client pointed at ``MONGODB_URI`` and a per-test database
name; the imports the README leaves out (``Any``, ``Depends``, ``FastAPI``) are added where a
user would add them, and ``app = FastAPI()``, which step 4 uses and the SQLAlchemy Quick
Start defines, comes before step 4. Each test runs it as a fresh module, so its module-level
Motor client belongs to that test's event loop. The README's placeholder ``secret_key`` is
refused outside developer mode (issue 11): the tests run the text with a generated secret in
its place, and one test checks the placeholder is refused.
"""

from __future__ import annotations

import importlib.util
import re
import secrets
import sys
import types
import uuid
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from otpcore.domain.errors import ConfigurationError
from otpcore_fastapi import get_auth_router, get_current_user_dependency
from tests.backends.mongodb import mongodb_uri

pytestmark = pytest.mark.mongodb

EMAIL = "alice@example.com"
# The Quick Start keeps cookie_secure at its default (True), so its client speaks https.
BASE_URL = "https://testserver"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mongodb_usage.py"

QUICK_START = '''
from typing import Any
from fastapi import Depends

# 1. Create Your User Model
from pydantic import Field
from otpcore_fastapi import BaseOTPUserDocument, TokenBlacklistDocument

class User(BaseOTPUserDocument):
    """User model with custom fields."""
    username: str = Field(..., max_length=50)
    full_name: str | None = Field(None, max_length=100)

# Blacklist uses default TokenBlacklistDocument
class Blacklist(TokenBlacklistDocument):
    pass

# 2. Configure OTP Authentication
from datetime import timedelta
from otpcore_fastapi import OTPAuthConfig

class MyOTPConfig(OTPAuthConfig):
    secret_key = "your-secret-key-generate-with-openssl-rand-hex-32"
    developer_mode = False

    access_token_lifetime = timedelta(hours=1)
    refresh_token_lifetime = timedelta(days=7)

    otp_length = 6
    otp_expiry = timedelta(minutes=10)
    max_otp_attempts = 5

    async def send_otp(self, email: str, code: str) -> None:
        print(f"OTP for {email}: {code}")

    def get_additional_claims(self, user: User) -> dict[str, Any]:
        return {"username": user.username}

# 3. Set Up MongoDB and Dependencies
from motor.motor_asyncio import AsyncIOMotorClient
from otpcore_fastapi import MongoDBAdapter

# MongoDB setup
client = AsyncIOMotorClient(MONGODB_URI)  # README: "mongodb://localhost:27017"
database = client[DATABASE_NAME]  # README: "myapp"

async def get_otp_db():
    return MongoDBAdapter(
        database=database,
        user_collection_name="users",
        blacklist_collection_name="token_blacklist",
        user_model_class=User,
    )

from fastapi import FastAPI
app = FastAPI()

# 4. Create Indexes (Important!)
@app.on_event("startup")
async def startup():
    # Unique index on email
    await database["users"].create_index("email", unique=True)

    # Index on jti for blacklist lookups
    await database["token_blacklist"].create_index("jti", unique=True)

    # TTL index to auto-delete expired tokens
    await database["token_blacklist"].create_index(
        "expires_at", expireAfterSeconds=0
    )

# 5. Register Router & Protect Routes
from otpcore_fastapi import get_auth_router, get_current_user_dependency

config = MyOTPConfig()
auth_router = get_auth_router(get_otp_db, config)
app.include_router(auth_router, prefix="/auth", tags=["auth"])

current_user = Depends(get_current_user_dependency(get_otp_db, config))

@app.get("/protected")
async def protected_route(user: User = current_user):
    return {"user_id": str(user.id), "email": user.email}
'''


PLACEHOLDER = "your-secret-key-generate-with-openssl-rand-hex-32"


def run_quick_start(module: types.ModuleType, *, secret: str | None) -> None:
    """Run the README text in ``module``, with ``secret`` in place of the placeholder."""
    text = QUICK_START if secret is None else QUICK_START.replace(PLACEHOLDER, secret)
    with warnings.catch_warnings():
        # Step 4 uses FastAPI's on_event, deprecated since the README was written.
        warnings.filterwarnings("ignore", "\\s*on_event is deprecated", DeprecationWarning)
        # The README's text is the thing under test, so it is run as text.
        exec(compile(text, "<README Quick Start (MongoDB)>", "exec"), module.__dict__)  # noqa: S102


async def test_the_readme_placeholder_secret_is_refused() -> None:
    module = types.ModuleType("mongodb_quickstart")
    module.__dict__.update(MONGODB_URI=mongodb_uri(), DATABASE_NAME=f"qs_{uuid.uuid4().hex}")
    try:
        with pytest.raises(ConfigurationError, match="placeholder"):
            run_quick_start(module, secret=None)
    finally:
        module.client.close()


@pytest.fixture
async def quickstart() -> AsyncIterator[types.ModuleType]:
    """The Quick Start as a fresh module on a fresh database, with its startup hook run."""
    module = types.ModuleType("mongodb_quickstart")
    module.__dict__.update(MONGODB_URI=mongodb_uri(), DATABASE_NAME=f"qs_{uuid.uuid4().hex}")
    assert QUICK_START.count(f'"{PLACEHOLDER}"') == 1
    run_quick_start(module, secret=secrets.token_hex(32))
    # ASGITransport sends no lifespan events; run the startup hook as the server would.
    await module.startup()
    yield module
    await module.client.drop_database(module.DATABASE_NAME)
    module.client.close()


def printed_code(capsys: pytest.CaptureFixture[str], email: str) -> str:
    """The code ``send_otp`` printed for ``email``."""
    found = re.findall(rf"OTP for {re.escape(email)}: (\d+)", capsys.readouterr().out)
    assert found, "send_otp printed no code"
    code: str = found[-1]
    return code


def http(app: FastAPI, base_url: str = BASE_URL) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


async def sign_up(quickstart: types.ModuleType, email: str, username: str) -> str:
    """Create a user as the application's own sign-up would (``username`` is required)."""
    user = await (await quickstart.get_otp_db()).create_user(email, username=username)
    user_id: str = user.id
    return user_id


async def test_the_quick_start_runs_the_whole_flow(
    quickstart: types.ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    user_id = await sign_up(quickstart, EMAIL, "alice")
    async with http(quickstart.app) as client:
        requested = await client.post("/auth/request-otp", json={"email": EMAIL})
        assert requested.status_code == 200
        # Issue 8 adds the binding (challenge_id) to the reference's shape.
        assert requested.json()["message"] == "OTP code has been sent to your email"
        assert set(requested.json()) == {"message", "challenge_id"}
        code = printed_code(capsys, EMAIL)
        # Issue 8: the pending code lives on the requester's binding, in the collection
        # named after the blacklist's, keyed by hashes (never the address or the code).
        pending = await quickstart.database["token_blacklist_challenges"].find_one({})
        assert re.fullmatch("[0-9a-f]{64}", pending["code_hash"])  # a hash, never the code
        assert EMAIL not in str(pending)

        wrong = "1" * 6 if code != "1" * 6 else "2" * 6
        refused = await client.post("/auth/verify-otp", json={"email": EMAIL, "code": wrong})
        assert refused.status_code == 401

        verified = await client.post("/auth/verify-otp", json={"email": EMAIL, "code": code})
        assert verified.status_code == 200
        body = verified.json()
        assert set(body) == {"access_token", "token_type"}
        assert verified.headers["set-cookie"].startswith("refresh_token=")
        headers = {"Authorization": f"Bearer {body['access_token']}"}

        protected = await client.get("/protected", headers=headers)
        assert protected.status_code == 200
        assert protected.json() == {"user_id": user_id, "email": EMAIL}

        refreshed = await client.post("/auth/refresh")
        assert refreshed.status_code == 200
        new_headers = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
        assert (await client.get("/protected", headers=new_headers)).status_code == 200

        assert (await client.post("/auth/logout")).status_code == 200
        assert (await client.get("/protected", headers=new_headers)).status_code == 401
        assert (await client.get("/protected")).status_code == 401

    stored = await quickstart.database["users"].find_one({"email": EMAIL})
    assert stored["otp_code"] is None  # consumed
    assert stored["is_verified"]


async def test_developer_mode_codes_are_zeros(quickstart: types.ModuleType) -> None:
    class DevConfig(quickstart.MyOTPConfig):  # type: ignore[misc, name-defined]
        developer_mode = True

    config = DevConfig()
    app = FastAPI()
    app.include_router(get_auth_router(quickstart.get_otp_db, config), prefix="/auth")
    me = Depends(get_current_user_dependency(quickstart.get_otp_db, config))

    @app.get("/me")
    async def whoami(user: Any = me) -> dict[str, Any]:
        return {"id": user.id, "username": user.username}

    user_id = await sign_up(quickstart, EMAIL, "alice")
    async with http(app) as client:
        assert (await client.post("/auth/request-otp", json={"email": EMAIL})).status_code == 200
        verified = await client.post("/auth/verify-otp", json={"email": EMAIL, "code": "000000"})
        assert verified.status_code == 200
        token = verified.json()["access_token"]
        response = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
        assert response.json() == {"id": user_id, "username": "alice"}


async def test_auto_creating_the_quick_start_user_names_the_hook_it_needs(
    quickstart: types.ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    # The README's User requires a username no library can invent; say which hook gives it.
    # Issue 8: no user before a verified login, so the right code's verify needs the hook,
    # and it fails before the code is spent.
    email = "new@example.com"
    async with http(quickstart.app) as client:
        assert (await client.post("/auth/request-otp", json={"email": email})).status_code == 200
        code = printed_code(capsys, email)
        with pytest.raises(ConfigurationError, match="new_user_fields"):
            await client.post("/auth/verify-otp", json={"email": email, "code": code})
        assert await quickstart.database["users"].count_documents({}) == 0
        quickstart.config.new_user_fields = lambda address: {"username": address.split("@")[0]}
        verified = await client.post("/auth/verify-otp", json={"email": email, "code": code})
        assert verified.status_code == 200, verified.text
    assert await quickstart.database["users"].count_documents({}) == 1


async def test_the_example_app_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    database_name = f"example_{uuid.uuid4().hex}"
    monkeypatch.setenv("MONGODB_URI", mongodb_uri())
    monkeypatch.setenv("MONGODB_DATABASE", database_name)
    spec = importlib.util.spec_from_file_location("mongodb_usage_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = example  # FastAPI resolves the string annotations through it
    try:
        spec.loader.exec_module(example)
        await example.client.drop_database(database_name)
        async with example.app.router.lifespan_context(example.app):
            indexes = await example.database["token_blacklist"].index_information()
            assert any(spec.get("expireAfterSeconds") == 0 for spec in indexes.values())
            async with http(example.app, "http://testserver") as client:
                email = "carol@example.com"
                requested = await client.post("/auth/request-otp", json={"email": email})
                assert requested.status_code == 200
                code = printed_code(capsys, email)
                verified = await client.post(
                    "/auth/verify-otp", json={"email": email, "code": code}
                )
                headers = {"Authorization": f"Bearer {verified.json()['access_token']}"}
                claims = await client.get("/check-claims", headers=headers)
                assert claims.json() == {"custom_claims": {"username": "carol"}}
                verified_only = await client.get("/verified-only", headers=headers)
                assert verified_only.status_code == 200
            await example.client.drop_database(database_name)
    finally:
        sys.modules.pop(spec.name, None)
