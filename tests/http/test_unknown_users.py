"""Unknown e-mails: indistinguishable from known ones unless the app opts in to revealing."""

from __future__ import annotations

from tests.http.conftest import EMAIL, HarnessFactory

STRANGER = "stranger@example.com"


async def test_auto_create_is_the_default(make_harness: HarnessFactory) -> None:
    h = await make_harness()
    assert (await h.request_code(STRANGER)).status_code == 200
    assert [email for email, _ in h.config.outbox] == [STRANGER]
    # Issue 8: no account before a verified login; the first verify creates it.
    assert await h.memory.find_by_email(STRANGER) is None
    verified = await h.client.post(
        "/auth/verify-otp", json={"email": STRANGER, "code": h.config.last_code(STRANGER)}
    )
    assert verified.status_code == 200
    assert await h.memory.find_by_email(STRANGER) is not None


async def test_without_auto_create_unknown_and_known_get_the_same_answer(
    make_harness: HarnessFactory,
) -> None:
    h = await make_harness(auto_create_user=False)
    await h.memory.create(EMAIL, {})
    known = await h.request_code(EMAIL)
    unknown = await h.request_code(STRANGER)
    assert known.status_code == unknown.status_code == 200
    # Issue 8: both get a binding, of the same form; everything else is identical.
    known_body, unknown_body = known.json(), unknown.json()
    known_id, unknown_id = known_body.pop("challenge_id"), unknown_body.pop("challenge_id")
    assert len(known_id) == len(unknown_id) > 0
    assert known_body == unknown_body
    assert set(known.headers) == set(unknown.headers)
    assert [email for email, _ in h.config.outbox] == [EMAIL]
    assert await h.memory.find_by_email(STRANGER) is None

    wrong = "1" * 6 if h.config.last_code() != "1" * 6 else "2" * 6
    known_guess = await h.client.post("/auth/verify-otp", json={"email": EMAIL, "code": wrong})
    unknown_guess = await h.client.post("/auth/verify-otp", json={"email": STRANGER, "code": wrong})
    assert known_guess.status_code == unknown_guess.status_code == 401
    assert known_guess.json() == unknown_guess.json()
    assert known_guess.headers["WWW-Authenticate"] == unknown_guess.headers["WWW-Authenticate"]


async def test_revealing_answers_404_for_unknown_users(make_harness: HarnessFactory) -> None:
    h = await make_harness(auto_create_user=False, reveal_unknown_users=True)
    await h.memory.create(EMAIL, {})
    assert (await h.request_code(EMAIL)).status_code == 200
    for response in (
        await h.request_code(STRANGER),
        await h.client.post("/auth/verify-otp", json={"email": STRANGER, "code": "123456"}),
    ):
        assert response.status_code == 404
        assert response.json() == {"detail": "User not found.", "code": "user_not_found"}


async def test_addresses_are_normalized_by_the_core(make_harness: HarnessFactory) -> None:
    h = await make_harness()
    assert (await h.request_code("  Alice@EXAMPLE.com ")).status_code == 200
    code = h.config.last_code(EMAIL)
    response = await h.client.post(
        "/auth/verify-otp", json={"email": "ALICE@example.COM", "code": code}
    )
    assert response.status_code == 200
