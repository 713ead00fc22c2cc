"""The dispatcher's plain parts: type patterns, URL rules, the retry schedule, signatures,
sealed secrets and the address rules. No servers."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from pos_dispatcher.adapters.network import NetworkRules
from pos_dispatcher.adapters.secrets import SecretBox
from pos_dispatcher.domain import model, signing
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from pos_kit.errors import InvalidArgument

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_patterns_name_public_types_wildcards_or_everything() -> None:
    assert model.matches(["order.*"], "order.confirmed")
    assert not model.matches(["order.*"], "orders.confirmed")
    assert model.matches(["*"], "customer.updated")
    assert model.matches(["payment.captured"], "payment.captured")
    assert not model.matches(["payment.captured"], "payment.voided")
    assert model.check_types(["order.*", "customer.updated", "*"]) == []
    bad = model.check_types(["order.confirmd", "nothing.*", "order.conf*"])
    assert [v.field for v in bad] == ["event_types[0]", "event_types[1]", "event_types[2]"]
    assert model.check_types([]) != []


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "https://user:pw@example.com/hook",
        "https:///nohost",
        "https://example.com/hook#frag",
        "https://example.com:99999/",
        "https://exämple.com/",
        "https://example.com/" + "a" * 2100,
    ],
)
def test_urls_that_cannot_be_webhook_endpoints_are_refused(url: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        model.validate_subscription(url, ["*"], "")
    assert err.value.violations[0].field == "url"


def test_the_schedule_retries_for_at_least_three_days_then_gives_up() -> None:
    rng = random.Random(7)
    when, attempt = NOW, 1
    while (following := model.next_attempt(attempt, when, rng=rng)) is not None:
        # Jitter only ever lengthens a wait.
        assert following - when >= model.RETRY_DELAYS[attempt - 1]
        when, attempt = following, attempt + 1
    assert attempt == model.MAX_ATTEMPTS
    assert when - NOW >= timedelta(days=3)


def test_retry_after_is_a_floor_never_a_shortcut() -> None:
    later = model.next_attempt(1, NOW, retry_after=timedelta(seconds=600))
    assert later is not None and later - NOW >= timedelta(seconds=600)
    sooner = model.next_attempt(5, NOW, retry_after=timedelta(seconds=1))
    assert sooner is not None and sooner - NOW >= model.RETRY_DELAYS[4]
    capped = model.next_attempt(1, NOW, retry_after=timedelta(days=30))
    assert capped is not None and capped - NOW <= model.MAX_RETRY_AFTER * 1.01
    assert model.parse_retry_after("120", NOW) == timedelta(seconds=120)
    assert model.parse_retry_after("Tue, 01 Dec 2026 12:05:00 GMT", NOW) == timedelta(minutes=5)
    assert model.parse_retry_after("soon", NOW) is None


def test_any_retry_after_a_receiver_sends_is_read_without_failing() -> None:
    """Past the cap is the cap, however many digits; digits of other scripts are no number."""
    for far in ("9" * 20, "9" * 5000):
        assert model.parse_retry_after(far, NOW) == model.MAX_RETRY_AFTER
    assert model.parse_retry_after("\u00b2", NOW) is None
    assert model.parse_retry_after("\u0663\u0660", NOW) is None


def test_verdicts() -> None:
    assert model.verdict(200) is model.Verdict.SUCCEEDED
    assert model.verdict(204) is model.Verdict.SUCCEEDED
    assert model.verdict(410) is model.Verdict.GONE
    for code in (0, 301, 400, 404, 429, 500, 503):
        assert model.verdict(code) is model.Verdict.RETRY


def test_the_reference_library_verifies_our_signatures_and_catches_tampering() -> None:
    secret = signing.new_secret()
    body = '{"id":"evt_1","type":"order.confirmed"}'
    stamp = int(datetime.now(UTC).timestamp())
    headers = signing.headers([secret], "evt_1", stamp, body)
    assert Webhook(secret).verify(body, headers) == {"id": "evt_1", "type": "order.confirmed"}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace("confirmed", "cancelled"), headers)
    old = signing.headers([secret], "evt_1", stamp - 3600, body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, old)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(body, headers)


def test_during_a_rotation_either_secret_verifies() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    body = "{}"
    headers = signing.headers([new, old], "evt_2", int(datetime.now(UTC).timestamp()), body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(body, headers)
    Webhook(new).verify(body, headers)


def test_sealed_secrets_open_only_under_their_key_and_on_their_row() -> None:
    box = SecretBox(["first-key-of-the-deployment-0123456789"])
    sealed = box.seal("whsec_abc", "mer_a", "whsub_1")
    assert b"whsec_abc" not in sealed
    assert box.open(sealed, "mer_a", "whsub_1") == "whsec_abc"
    with pytest.raises(Exception):  # noqa: B017 - any failure to open will do
        box.open(sealed, "mer_b", "whsub_1")
    rotated = SecretBox(
        ["a-newer-key-of-the-deployment-987654", "first-key-of-the-deployment-0123456789"]
    )
    assert rotated.open(sealed, "mer_a", "whsub_1") == "whsec_abc"
    assert rotated.seal("x", "m", "s")[:4] != sealed[:4]
    with pytest.raises(LookupError):
        SecretBox(["an-unrelated-key-000000000000000000"]).open(sealed, "mer_a", "whsub_1")


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "192.168.0.10", "172.16.5.4", "::1", "fd00::1", "100.64.0.1",
     "169.254.169.254", "fe80::1", "224.0.0.1", "0.0.0.0", "::ffff:10.0.0.1", "fd00:ec2::254",
     "240.0.0.1", "fec0::1", "2002:7f00:1::1", "2002:a00:1::1", "64:ff9b::a00:1"],
)  # fmt: skip
def test_private_and_special_addresses_are_refused(address: str) -> None:
    assert NetworkRules().refused(address)


def test_the_sandbox_allows_private_addresses_but_never_metadata() -> None:
    sandbox = NetworkRules(allow_private=True)
    assert not sandbox.refused("127.0.0.1")
    assert not sandbox.refused("::1")  # loopback in IPv6 too
    assert NetworkRules().refused("::1")
    assert not sandbox.refused("10.0.0.5")
    for address in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "fe80::1"):
        assert sandbox.refused(address)
    # The metadata address wrapped in IPv6 (6to4, NAT64) is the metadata address.
    for address in ("2002:a9fe:a9fe::1", "64:ff9b::a9fe:a9fe"):
        assert sandbox.refused(address)
        assert NetworkRules().refused(address)
    assert not NetworkRules().refused("93.184.215.14")
    assert not NetworkRules().refused("2002:5db8:d70e::1")  # 6to4 of a public address


async def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    with pytest.raises(Exception, match="may not reach"):
        await NetworkRules().resolve("http://localhost:8080/hook")
    assert await NetworkRules(allow_private=True).resolve("http://127.0.0.1:8080/") == "127.0.0.1"
