"""Policy validation at construction (otpcore.domain.policy)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from otpcore.domain.challenge import resend_wait
from otpcore.domain.policy import MIN_SECRET_BYTES, Policy

SECRET = b"s" * MIN_SECRET_BYTES


def make(**overrides: Any) -> Policy:
    kwargs: dict[str, Any] = {"secret": SECRET}
    kwargs.update(overrides)
    return Policy(**kwargs)


def test_defaults_are_valid_and_documented_values() -> None:
    policy = make()
    assert policy.code_length == 6
    assert policy.code_lifetime == timedelta(minutes=10)
    assert policy.max_attempts == 5
    assert policy.resend_cooldown == timedelta(seconds=60)
    assert policy.max_failures == 100
    assert policy.lockout_duration == timedelta(hours=24)
    assert policy.leeway == timedelta(seconds=30)  # issue 10: hosts' clocks drift
    assert policy.session_lifetime == timedelta(days=30)  # NIST SP 800-63B AAL1
    assert policy.idle_timeout is None
    assert policy.session_idle_timeout == policy.refresh_lifetime
    assert policy.refresh_grace == timedelta(seconds=10)
    assert policy.client_id is None
    assert policy.developer_mode is False


def test_secret_never_appears_in_repr() -> None:
    assert "sss" not in repr(make())


# --- secret -------------------------------------------------------------------------------


def test_min_secret_bytes_is_256_bits() -> None:
    assert MIN_SECRET_BYTES == 32


@pytest.mark.parametrize("size", [1, 16, MIN_SECRET_BYTES - 1])
def test_short_secret_refused_outside_developer_mode(size: int) -> None:
    with pytest.raises(ValueError, match=r"secret must be at least 32 bytes outside developer"):
        make(secret=b"x" * size)


def test_secret_of_exactly_min_length_accepted() -> None:
    assert make(secret=b"x" * MIN_SECRET_BYTES).secret == b"x" * MIN_SECRET_BYTES


@pytest.mark.parametrize("size", [1, 16, MIN_SECRET_BYTES - 1])
def test_short_secret_accepted_in_developer_mode(size: int) -> None:
    policy = make(secret=b"x" * size, developer_mode=True)
    assert policy.secret == b"x" * size
    assert policy.developer_mode is True


@pytest.mark.parametrize("developer_mode", [False, True])
def test_empty_secret_always_refused(developer_mode: bool) -> None:
    with pytest.raises(ValueError, match="secret must be set"):
        make(secret=b"", developer_mode=developer_mode)


def test_refusal_message_says_how_to_generate_a_secret() -> None:
    with pytest.raises(ValueError, match="openssl rand -hex 32"):
        make(secret=b"short")


# --- code ---------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [-1, 0, 3, 11, 20])
def test_code_length_out_of_range_refused(length: int) -> None:
    with pytest.raises(ValueError, match=rf"code_length must be between 4 and 10, got {length}"):
        make(code_length=length)


@pytest.mark.parametrize("length", range(4, 11))
def test_code_length_in_range_accepted(length: int) -> None:
    assert make(code_length=length).code_length == length


@pytest.mark.parametrize("attempts", [0, -1])
def test_max_attempts_below_one_refused(attempts: int) -> None:
    with pytest.raises(ValueError, match=rf"max_attempts must be at least 1, got {attempts}"):
        make(max_attempts=attempts)


def test_max_attempts_of_one_accepted() -> None:
    assert make(max_attempts=1).max_attempts == 1


# --- failure cap (NIST SP 800-63B: at most 100 consecutive failures) ------------------------


@pytest.mark.parametrize("failures", [0, -1, 101, 1000])
def test_max_failures_out_of_range_refused(failures: int) -> None:
    with pytest.raises(
        ValueError, match=rf"max_failures must be between 1 and 100, got {failures}"
    ):
        make(max_failures=failures)


@pytest.mark.parametrize("failures", [1, 7, 100])
def test_max_failures_in_range_accepted(failures: int) -> None:
    assert make(max_failures=failures).max_failures == failures


# --- durations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "code_lifetime",
        "access_lifetime",
        "refresh_lifetime",
        "session_lifetime",
        "lockout_duration",
    ],
)
@pytest.mark.parametrize("value", [timedelta(0), timedelta(seconds=-1)])
def test_lifetimes_must_be_positive(name: str, value: timedelta) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be positive$"):
        make(**{name: value})


def test_negative_resend_cooldown_refused() -> None:
    with pytest.raises(ValueError, match="resend_cooldown must not be negative"):
        make(resend_cooldown=timedelta(seconds=-1))


def test_zero_resend_cooldown_accepted() -> None:
    assert make(resend_cooldown=timedelta(0)).resend_cooldown == timedelta(0)


# Issue 10: the leeway is configurable with a 30 s default, so its bound moved to 5 minutes.
@pytest.mark.parametrize(
    "leeway", [timedelta(seconds=301), timedelta(minutes=5, microseconds=1), timedelta(-1)]
)
def test_leeway_out_of_range_refused(leeway: timedelta) -> None:
    with pytest.raises(ValueError, match="leeway must be between 0 and 5 minutes"):
        make(leeway=leeway)


@pytest.mark.parametrize("seconds", [0, 1, 30, 300])
def test_leeway_in_range_accepted(seconds: int) -> None:
    assert make(leeway=timedelta(seconds=seconds)).leeway == timedelta(seconds=seconds)


# --- sessions (issue 10) -------------------------------------------------------------------


@pytest.mark.parametrize("value", [timedelta(0), timedelta(seconds=-1)])
def test_idle_timeout_must_be_positive(value: timedelta) -> None:
    with pytest.raises(ValueError, match=r"^idle_timeout must be positive$"):
        make(idle_timeout=value)


def test_idle_timeout_shorter_than_access_lifetime_refused() -> None:
    with pytest.raises(ValueError, match="idle_timeout must not be shorter than access_lifetime"):
        make(access_lifetime=timedelta(hours=1), idle_timeout=timedelta(minutes=59))


def test_configured_idle_timeout_is_the_one_in_force() -> None:
    policy = make(idle_timeout=timedelta(days=2))
    assert policy.session_idle_timeout == timedelta(days=2)


@pytest.mark.parametrize(
    "grace", [timedelta(seconds=-1), timedelta(minutes=5, microseconds=1), timedelta(hours=1)]
)
def test_refresh_grace_out_of_range_refused(grace: timedelta) -> None:
    with pytest.raises(ValueError, match="refresh_grace must be between 0 and 5 minutes"):
        make(refresh_grace=grace)


@pytest.mark.parametrize("seconds", [0, 10, 300])
def test_refresh_grace_in_range_accepted(seconds: int) -> None:
    assert make(refresh_grace=timedelta(seconds=seconds)).refresh_grace.total_seconds() == seconds


def test_empty_client_id_refused() -> None:
    with pytest.raises(ValueError, match="client_id must not be empty"):
        make(client_id="")


def test_refresh_shorter_than_access_refused() -> None:
    with pytest.raises(
        ValueError, match="refresh_lifetime must not be shorter than access_lifetime"
    ):
        make(access_lifetime=timedelta(hours=2), refresh_lifetime=timedelta(hours=1))


def test_refresh_equal_to_access_accepted() -> None:
    policy = make(access_lifetime=timedelta(hours=1), refresh_lifetime=timedelta(hours=1))
    assert policy.refresh_lifetime == policy.access_lifetime


# --- backoff ------------------------------------------------------------------------------


def test_unsorted_backoff_refused() -> None:
    with pytest.raises(ValueError, match="backoff must be sorted by failures"):
        make(backoff=((5, timedelta(minutes=1)), (0, timedelta(0))))


def test_negative_backoff_wait_refused() -> None:
    with pytest.raises(ValueError, match="non-negative waits"):
        make(backoff=((0, timedelta(0)), (5, timedelta(seconds=-1))))


def test_empty_backoff_accepted() -> None:
    policy = make(backoff=())
    assert resend_wait(0, policy=policy) == policy.resend_cooldown
    assert resend_wait(99, policy=policy) == policy.resend_cooldown


# --- developer mode refused in production ---------------------------------------------------


@pytest.mark.parametrize("name", ["production", "prod", " Production ", "PROD", "prod\n"])
def test_developer_mode_refused_in_production(name: str) -> None:
    with pytest.raises(ValueError, match=r"developer_mode is on but the environment is") as refused:
        make(developer_mode=True, environment=name)
    assert "Turn developer_mode off" in str(refused.value)


@pytest.mark.parametrize("name", [None, "", "development", "staging", "test", "production-eu"])
def test_developer_mode_allowed_outside_production(name: str | None) -> None:
    assert make(developer_mode=True, environment=name).developer_mode is True


def test_production_without_developer_mode_accepted() -> None:
    assert make(environment="production").environment == "production"


def test_policy_is_frozen() -> None:
    policy = make()
    with pytest.raises(AttributeError):
        policy.max_attempts = 99  # type: ignore[misc]
