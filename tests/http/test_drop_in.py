"""Drop-in fidelity: settings assigned on a config instance apply to routers built before,
and the reference's typing names are exported."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from pymongo import AsyncMongoClient
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

import otpcore_fastapi
from otpcore.domain.errors import ConfigurationError
from otpcore.ports import RevocationStore
from otpcore.stores.memory import MemoryStore
from otpcore_fastapi import (
    BaseOTPUserDocument,
    DatabaseAdapter,
    MongoDBAdapter,
    OTPAuthConfig,
    OTPUserProtocol,
    PydanticOTPUserProtocol,
    SQLAlchemyAdapter,
    SQLAlchemyUserModelProtocol,
    get_custom_claims_dependency,
)
from tests.backends.sql_models import Base, Blacklist, User
from tests.http.conftest import BASE_URL, EMAIL, HarnessFactory, RecordingConfig

#: Every setting of the config: each annotated public attribute, including later ones.
SETTINGS = sorted(name for name in OTPAuthConfig.__annotations__ if not name.startswith("_"))


async def test_settings_assigned_after_construction_apply_to_a_built_router(
    make_harness: HarnessFactory,
) -> None:
    h = await make_harness()  # the router and dependencies exist already
    known = await h.memory.create("known@example.com", {})
    h.config.otp_length = 8
    h.config.auto_create_user = False

    assert (await h.request_code("stranger@example.com")).status_code == 200
    assert await h.memory.find_by_email("stranger@example.com") is None
    assert h.config.outbox == []  # no user created, nothing sent

    assert (await h.request_code(known.email)).status_code == 200
    code = h.config.last_code(known.email)
    assert len(code) == 8
    verified = await h.client.post("/auth/verify-otp", json={"email": known.email, "code": code})
    assert verified.status_code == 200


async def test_an_invalid_assignment_is_refused_and_changes_nothing(
    make_harness: HarnessFactory,
) -> None:
    h = await make_harness()
    service = h.config.auth
    with pytest.raises(ConfigurationError, match="code_length"):
        h.config.otp_length = 3
    with pytest.raises(ConfigurationError, match="cookie_samesite"):
        h.config.cookie_samesite = "sometimes"  # type: ignore[assignment]
    with pytest.raises(ConfigurationError, match="at least 32"):
        h.config.secret_key = "short"
    assert h.config.otp_length == 6
    assert h.config.cookie_samesite == "lax"
    assert "otp_length" not in vars(h.config)  # the class value shows through again
    assert h.config.auth is service
    body = await h.login()  # and the router still works as before
    assert len(h.config.last_code()) == 6
    assert body["access_token"]


@pytest.mark.parametrize("name", SETTINGS)
def test_assigning_any_setting_revalidates_and_rebuilds(name: str) -> None:
    config = RecordingConfig()
    before = config.auth
    setattr(config, name, getattr(config, name))
    assert config.auth is not before, name


def test_deleting_an_instance_setting_falls_back_to_the_class_value() -> None:
    config = RecordingConfig()
    config.otp_length = 8
    assert config.policy.code_length == 8
    del config.otp_length
    assert config.policy.code_length == 6


async def test_a_hook_assigned_on_the_instance_is_used(make_harness: HarnessFactory) -> None:
    h = await make_harness()
    delivered: list[str] = []

    async def sms(email: str, code: str) -> None:
        delivered.append(code)

    h.config.send_otp = sms  # type: ignore[method-assign]
    assert (await h.request_code()).status_code == 200
    assert len(delivered) == 1
    assert h.config.outbox == []


async def test_the_delivery_mode_can_change_on_a_built_router(
    make_harness: HarnessFactory,
) -> None:
    h = await make_harness(refresh_token_delivery="cookie")
    h.config.refresh_token_delivery = "body"
    body = await h.login()
    assert "refresh_token" in body
    assert "refresh_token" not in h.client.cookies
    refreshed = await h.client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] != body["refresh_token"]


async def test_developer_mode_switched_on_later_is_announced(
    make_harness: HarnessFactory,
) -> None:
    h = await make_harness()
    h.config.developer_mode = True
    response = await h.request_code()
    assert response.json()["message"] == "Developer mode: OTP code is 000000"


async def test_an_explicit_revocation_source_serves_claims_without_a_router() -> None:
    store = MemoryStore()
    opened: list[str] = []

    @asynccontextmanager
    async def revocations() -> AsyncIterator[RevocationStore]:
        opened.append("open")
        yield store

    class ExplicitSource(RecordingConfig):
        revocation_source = staticmethod(revocations)

    config = ExplicitSource()
    app = FastAPI()
    claims = Depends(get_custom_claims_dependency(config))

    @app.get("/claims")
    async def read(c: dict[str, Any] = claims) -> dict[str, Any]:
        return c

    account = await store.create(EMAIL, {})
    token = config.auth.codec.issue(
        kind="access",
        subject=account.user_id,
        sid="s1",
        jti="j1",
        auth_time=config.clock().timestamp(),
        now=config.clock(),
    )
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as c:
        assert (await c.get("/claims", headers=headers)).status_code == 200
        assert (await c.get("/claims", headers=headers)).status_code == 200
        assert opened == ["open"]  # once per interval, not per request
        await config.auth.with_store(store).logout(access_token=token)
        config.clock.advance(config.revocation_mirror_interval)
        assert (await c.get("/claims", headers=headers)).status_code == 401
    assert opened == ["open", "open"]


def test_a_revocation_source_that_is_not_callable_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="revocation_source"):
        RecordingConfig(revocation_source="sqlite:///x.db")


# -- the reference's typing names ----------------------------------------------------------------


def test_the_reference_typing_names_are_exported() -> None:
    for name in (
        "DatabaseAdapter",
        "OTPUserProtocol",
        "PydanticOTPUserProtocol",
        "SQLAlchemyUserModelProtocol",
    ):
        assert name in otpcore_fastapi.__all__
        assert getattr(otpcore_fastapi, name) is not None


async def test_the_sqlalchemy_adapter_and_its_user_fit_the_protocols(tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'otp.db'}")
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            adapter: DatabaseAdapter[User] = SQLAlchemyAdapter(session, User, Blacklist)
            assert isinstance(adapter, DatabaseAdapter)
            user = await adapter.create_user(EMAIL)
            assert isinstance(user, OTPUserProtocol)
            assert isinstance(User, SQLAlchemyUserModelProtocol)
            assert await adapter.get_by_email(EMAIL) is not None
    finally:
        await engine.dispose()


async def test_the_mongodb_adapter_and_its_document_fit_the_protocols() -> None:
    class Member(BaseOTPUserDocument):
        pass

    client: AsyncMongoClient[Any] = AsyncMongoClient("mongodb://127.0.0.1:1", connect=False)
    try:
        adapter: DatabaseAdapter[Member] = MongoDBAdapter(
            database=client["app"],
            user_collection_name="users",
            blacklist_collection_name="token_blacklist",
            user_model_class=Member,
        )
        assert isinstance(adapter, DatabaseAdapter)
        member = Member(email=EMAIL)
        assert isinstance(member, PydanticOTPUserProtocol)
        assert isinstance(member, OTPUserProtocol)
    finally:
        await client.close()


def test_a_plain_object_is_no_adapter() -> None:
    assert not isinstance(object(), DatabaseAdapter)
    assert not isinstance(object(), OTPUserProtocol)


def test_settings_keep_their_lifetimes() -> None:
    # Reading a setting back gives what was assigned, as with the reference's plain class.
    config = RecordingConfig()
    config.access_token_lifetime = timedelta(minutes=5)
    assert config.access_token_lifetime == timedelta(minutes=5)
    assert config.policy.access_lifetime == timedelta(minutes=5)


async def test_a_revocation_source_set_as_a_plain_function_is_not_bound() -> None:
    store = MemoryStore()

    @asynccontextmanager
    async def revocations() -> AsyncIterator[RevocationStore]:
        yield store

    class PlainAttribute(RecordingConfig):
        revocation_source = revocations  # a plain function: read through self, it is bound

    config = PlainAttribute()
    await config.auth.refresh_mirror(force=True)  # calls the source with no arguments
    assert config.auth.mirror.since() is not None
