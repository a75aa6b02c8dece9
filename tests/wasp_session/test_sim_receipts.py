"""The simulator's pending receipts: one claim per receipt, due ones only, junk set aside."""

from __future__ import annotations

import math
import time

import redis
from hypothesis import given
from hypothesis import strategies as st

from wasp import contract
from wasp_session.transport.sim_receipts import (
    DueReceipt,
    PendingReceipts,
    parse_receipt,
    receipt_member,
)

TENANT = "acme"


@given(st.text(max_size=200))
def test_any_member_text_parses_to_a_receipt_or_none_never_an_error(member: str) -> None:
    parsed = parse_receipt(member)
    assert parsed is None or parsed[1] in ("delivered", "read")


@given(st.text(min_size=1, max_size=40), st.sampled_from(["delivered", "read"]))
def test_a_member_reads_back_as_written(whatsapp_id: str, kind: str) -> None:
    assert parse_receipt(receipt_member(whatsapp_id, kind)) == (whatsapp_id, kind)


def test_due_receipts_are_claimed_once_one_per_message_a_look(redis_client: redis.Redis) -> None:
    past, future = time.time() - 5, time.time() + 3600
    redis_client.zadd(
        contract.simulator_receipts_key(TENANT),
        {
            receipt_member("A", "delivered"): past,
            receipt_member("A", "read"): past + 1,
            receipt_member("B", "delivered"): future,
            "not a receipt": past,
        },
    )
    one, other = PendingReceipts(redis_client, TENANT), PendingReceipts(redis_client, TENANT)
    assert one.may_be_due()  # never looked: look
    assert one.claim_due() == [DueReceipt("A", "delivered", past)]
    assert one.may_be_due()  # "read" is due too, left for the next look
    assert one.claim_due() == [DueReceipt("A", "read", past + 1)]
    assert other.claim_due() == []  # claimed already: nobody plays one twice
    assert not one.may_be_due()
    assert one.next_due() == future
    assert redis_client.zrange(contract.simulator_receipts_key(TENANT), 0, -1) == [
        receipt_member("B", "delivered")
    ]  # the junk member is gone


def test_a_send_of_this_process_makes_its_receipt_due_without_asking(
    redis_client: redis.Redis,
) -> None:
    receipts = PendingReceipts(redis_client, TENANT)
    assert receipts.claim_due() == []
    assert receipts.next_due() == math.inf
    assert not receipts.may_be_due()
    receipts.noted(time.time() - 1)
    assert receipts.may_be_due()


def test_receipts_put_back_are_played_again(redis_client: redis.Redis) -> None:
    receipts = PendingReceipts(redis_client, TENANT)
    claimed = DueReceipt("A", "delivered", time.time() - 1)
    receipts.put_back([claimed])
    assert receipts.may_be_due()
    assert receipts.claim_due() == [claimed]
