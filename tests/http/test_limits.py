"""Send and guess limits over HTTP (issue 8, item 1), with the fake clock.

Each limit is on by default; a refusal is 429 ``rate_limited`` with ``Retry-After``, and
waiting that long is enough. Client addresses are what the ASGI server reports
(``scope["client"]``), set here per client through httpx's ASGI transport.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from otpcore.domain.errors import ConfigurationError
from otpcore.domain.limits import Limits
from tests.http.conftest import BASE_URL, EMAIL, Harness, HarnessFactory, RecordingConfig

WRONG = "000000"


@pytest.fixture
async def clients() -> AsyncIterator[list[httpx.AsyncClient]]:
    """Clients made by :func:`client_at`, closed afterwards."""
    made: list[httpx.AsyncClient] = []
    yield made
    for client in made:
        await client.aclose()


def client_at(h: Harness, ip: str, made: list[httpx.AsyncClient]) -> httpx.AsyncClient:
    """A client of ``h``'s app whose requests come from ``ip``."""
    transport = httpx.ASGITransport(app=h.app, client=(ip, 40_000))
    client = httpx.AsyncClient(transport=transport, base_url=BASE_URL)
    made.append(client)
    return client


async def request(client: httpx.AsyncClient, email: str) -> httpx.Response:
    """POST request-otp."""
    return await client.post("/auth/request-otp", json={"email": email})


def assert_limited(response: httpx.Response) -> int:
    """A 429 ``rate_limited`` with ``Retry-After``; its seconds."""
    assert response.status_code == 429, response.text
    assert response.json()["code"] == "rate_limited"
    retry_after = int(response.headers["Retry-After"])
    assert retry_after >= 1
    return retry_after


def test_the_config_defaults_are_the_cores() -> None:
    config = RecordingConfig()
    core = Limits()
    assert core.per_client is not None
    assert core.per_mailbox is not None
    assert core.verify_per_client is not None
    assert config.send_limit_per_client == core.per_client.limit
    assert config.send_limit_per_client_window == core.per_client.per
    assert config.send_limit_per_mailbox == core.per_mailbox.limit
    assert config.send_limit_per_mailbox_window == core.per_mailbox.per
    assert config.send_limit_global_per_hour is core.global_per_hour is None
    assert config.verify_limit_per_client == core.verify_per_client.limit
    assert config.verify_limit_per_client_window == core.verify_per_client.per


async def test_one_client_asking_for_300_addresses_within_a_minute_gets_at_most_30(
    make_harness: HarnessFactory,
) -> None:
    h = await make_harness()
    statuses = []
    for index in range(300):
        statuses.append((await h.request_code(f"user{index}@example.com")).status_code)
        h.clock.advance(timedelta(milliseconds=190))  # 300 requests in 57 s
    assert len(h.config.outbox) <= 30
    assert statuses.count(200) == len(h.config.outbox) > 0
    assert set(statuses) == {200, 429}


async def test_the_per_client_limit_refuses_until_retry_after(
    make_harness: HarnessFactory,
) -> None:
    h = await make_harness(
        send_limit_per_client=3, send_limit_per_client_window=timedelta(seconds=60)
    )
    for index in range(3):
        assert (await h.request_code(f"user{index}@example.com")).status_code == 200
    refused = await h.request_code("user3@example.com")
    retry_after = assert_limited(refused)
    assert len(h.config.outbox) == 3
    h.clock.advance(timedelta(seconds=retry_after - 1))
    assert_limited(await h.request_code("user3@example.com"))
    h.clock.advance(timedelta(seconds=1))
    assert (await h.request_code("user3@example.com")).status_code == 200


async def test_other_clients_keep_their_own_budget(
    make_harness: HarnessFactory, clients: list[httpx.AsyncClient]
) -> None:
    h = await make_harness(send_limit_per_client=2)
    first, second = client_at(h, "198.51.100.1", clients), client_at(h, "198.51.100.2", clients)
    for index in range(2):
        assert (await request(first, f"a{index}@example.com")).status_code == 200
    assert_limited(await request(first, "a2@example.com"))
    assert (await request(second, "b0@example.com")).status_code == 200


async def test_ipv6_clients_in_one_64_share_a_budget(
    make_harness: HarnessFactory, clients: list[httpx.AsyncClient]
) -> None:
    h = await make_harness(send_limit_per_client=2)
    one = client_at(h, "2001:db8:1:2::1", clients)
    same_64 = client_at(h, "2001:db8:1:2:ffff::9", clients)
    other_64 = client_at(h, "2001:db8:1:3::1", clients)
    assert (await request(one, "a@example.com")).status_code == 200
    assert (await request(same_64, "b@example.com")).status_code == 200
    assert_limited(await request(same_64, "c@example.com"))
    assert (await request(other_64, "c@example.com")).status_code == 200


async def test_100_tag_variants_from_100_clients_within_a_minute_reach_the_mailbox_5_times(
    make_harness: HarnessFactory, clients: list[httpx.AsyncClient]
) -> None:
    h = await make_harness()
    statuses = []
    for index in range(100):
        client = client_at(h, f"203.0.113.{index + 1}", clients)
        statuses.append((await request(client, f"victim+{index}@example.com")).status_code)
        h.clock.advance(timedelta(milliseconds=500))
    assert len(h.config.outbox) <= 5
    assert statuses.count(200) == len(h.config.outbox) > 0
    assert {s for s in statuses if s != 200} == {429}


async def test_gmail_dots_case_and_domains_are_one_mailbox(
    make_harness: HarnessFactory, clients: list[httpx.AsyncClient]
) -> None:
    h = await make_harness(send_limit_per_mailbox=2)
    variants = ["victim@gmail.com", "v.ictim@gmail.com", "VICTIM+x@googlemail.com"]
    responses = [
        await request(client_at(h, f"192.0.2.{i + 1}", clients), address)
        for i, address in enumerate(variants)
    ]
    assert [r.status_code for r in responses[:2]] == [200, 200]
    assert_limited(responses[2])
    # Another mailbox at the same provider is unaffected.
    other = await request(client_at(h, "192.0.2.9", clients), "victor@gmail.com")
    assert other.status_code == 200


async def test_the_global_budget_is_off_by_default_and_caps_every_address_when_set(
    make_harness: HarnessFactory, clients: list[httpx.AsyncClient]
) -> None:
    assert RecordingConfig().send_limit_global_per_hour is None
    h = await make_harness(send_limit_global_per_hour=3)
    responses = [
        await request(client_at(h, f"192.0.2.{i + 1}", clients), f"user{i}@example.com")
        for i in range(4)
    ]
    assert [r.status_code for r in responses[:3]] == [200, 200, 200]
    retry_after = assert_limited(responses[3])
    assert retry_after <= 2 * 3600  # a sliding hour: at most two fixed windows away
    h.clock.advance(timedelta(seconds=retry_after))
    again = await request(client_at(h, "192.0.2.99", clients), "late@example.com")
    assert again.status_code == 200


async def test_guesses_per_client_are_limited_across_addresses(
    make_harness: HarnessFactory, clients: list[httpx.AsyncClient]
) -> None:
    h = await make_harness(verify_limit_per_client=5)
    sprayer, owner = client_at(h, "198.51.100.7", clients), client_at(h, "198.51.100.8", clients)
    for index in range(5):
        body = {"email": f"user{index}@example.com", "code": WRONG}
        assert (await sprayer.post("/auth/verify-otp", json=body)).status_code == 401
    body = {"email": "user5@example.com", "code": WRONG}
    retry_after = assert_limited(await sprayer.post("/auth/verify-otp", json=body))
    # Another client's login is not affected.
    assert (await request(owner, EMAIL)).status_code == 200
    verified = await owner.post(
        "/auth/verify-otp", json={"email": EMAIL, "code": h.config.last_code()}
    )
    assert verified.status_code == 200
    h.clock.advance(timedelta(seconds=retry_after))
    assert (await sprayer.post("/auth/verify-otp", json=body)).status_code == 401


async def test_none_turns_a_limit_off(make_harness: HarnessFactory) -> None:
    h = await make_harness(send_limit_per_client=None, send_limit_per_mailbox=None)
    for index in range(40):
        assert (await h.request_code(f"user{index}@example.com")).status_code == 200
    assert len(h.config.outbox) == 40


async def test_a_failing_mailer_cannot_be_retried_past_the_limits(
    make_harness: HarnessFactory,
    clients: list[httpx.AsyncClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    class FailingConfig(RecordingConfig):
        async def send_otp(self, email: str, code: str) -> None:
            self.outbox.append((email, code))
            raise ConnectionError(f"smtp down while sending {code} to {email}")

    h = await make_harness(config_class=FailingConfig, send_limit_per_mailbox=3)
    statuses = [
        (await request(client_at(h, f"192.0.2.{i + 1}", clients), EMAIL)).status_code
        for i in range(5)
    ]
    assert statuses == [200, 200, 200, 429, 429]
    assert len(h.config.outbox) == 3  # three attempts to send, then the limit
    codes = [code for _, code in h.config.outbox]
    failures = [r for r in caplog.records if "deliver" in r.getMessage()]
    assert len(failures) == 3
    for record in failures:
        message = record.getMessage()
        assert EMAIL not in message
        assert "a***@example.com" in message
        assert not any(code in message for code in codes)
        assert "ConnectionError" in message
        assert record.exc_info is None  # the exception's text quotes the code


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"send_limit_per_client": 0}, "send_limit_per_client"),
        ({"send_limit_per_mailbox": -1}, "send_limit_per_mailbox"),
        ({"send_limit_per_mailbox": True}, "send_limit_per_mailbox"),
        ({"verify_limit_per_client": 2.5}, "verify_limit_per_client"),
        ({"send_limit_per_client_window": timedelta(0)}, "send_limit_per_client_window"),
        ({"verify_limit_per_client_window": 60}, "verify_limit_per_client_window"),
        ({"send_limit_global_per_hour": 0}, "send_limit_global_per_hour"),
    ],
)
def test_bad_limit_settings_fail_at_construction(settings: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        RecordingConfig(**settings)


async def test_a_limit_assigned_later_applies_to_the_built_router(
    make_harness: HarnessFactory,
) -> None:
    h = await make_harness()
    with pytest.raises(ConfigurationError, match="send_limit_per_client"):
        h.config.send_limit_per_client = 0
    h.config.send_limit_per_client = 1
    assert (await h.request_code("one@example.com")).status_code == 200
    assert_limited(await h.request_code("two@example.com"))
