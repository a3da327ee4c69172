"""Tests of the shop's two workflows, with wf's test kit (pip install "wf[testing]").

The wf_env fixture is a whole wf engine for one test, on a throwaway database, running
the project at the root of this folder. Its clock skips ahead whenever every instance
only waits: the reminder's sleep, retry delays and a 7-day wait take no time.
"""

from pathlib import Path

import pytest
from workflows import read_records

from wf import NonRetryableError
from wf.testing import InstanceFailed, WorkflowTestEnv

PAYMENT = {"paymentId": "pay_test", "amountCents": 11800}


async def test_a_checkout_cancels_the_carts_reminder(
    wf_env: WorkflowTestEnv, files: dict[str, Path]
) -> None:
    # The shop starts a reminder for each cart, with the cart id as its instance id.
    reminder = await wf_env.create("cart-reminder", id="cart-1", params={"cartId": "cart-1"})
    await reminder.wait_for_status("waiting")  # asleep for REMINDER_WAIT

    wf_env.mock_step("checkout", "charge card", result=PAYMENT)
    wf_env.mock_event("checkout", "shipped", {"tracking": "1Z999"})
    checkout = await wf_env.create("checkout", params={"cartId": "cart-1"})
    output = await checkout.result()

    # The checkout reached the reminder through the CART_REMINDER binding.
    assert output["reminder"] == "cancelled"
    assert (await reminder.status())["status"] == "terminated"
    assert output["shipped"] is True and output["tracking"] == "1Z999"
    [order] = read_records(files["orders"])
    assert order == {"orderId": checkout.id, "cartId": "cart-1", **PAYMENT}
    [receipt] = read_records(files["outbox"])
    assert receipt["to"] == "ada@example.com" and "1Z999" in receipt["subject"]


async def test_a_cart_left_alone_gets_a_reminder(
    wf_env: WorkflowTestEnv, files: dict[str, Path]
) -> None:
    reminder = await wf_env.create("cart-reminder", id="cart-2", params={"cartId": "cart-2"})
    assert await reminder.result() == {"cartId": "cart-2", "reminded": True}
    [email] = read_records(files["outbox"])
    assert email["to"] == "grace@example.com"


async def test_a_bought_cart_gets_no_reminder(wf_env: WorkflowTestEnv) -> None:
    wf_env.disable_sleeps("cart-reminder")
    wf_env.mock_step("checkout", "charge card", result=PAYMENT)
    checkout = await wf_env.create("checkout", params={"cartId": "cart-3"})
    await checkout.wait_for_step("record order")
    reminder = await wf_env.create("cart-reminder", params={"cartId": "cart-3"})
    assert await reminder.result() == {"cartId": "cart-3", "reminded": False}


async def test_the_payment_is_retried_and_the_shipment_may_never_come(
    wf_env: WorkflowTestEnv, files: dict[str, Path]
) -> None:
    # Three failed attempts without running the body, then the real one (which
    # never fails with a failureRate of 0).
    error = ConnectionError("the payment API did not answer")
    wf_env.mock_step("checkout", "charge card", error=error, times=3)
    checkout = await wf_env.create("checkout", params={"cartId": "cart-3", "failureRate": 0})
    output = await checkout.result()
    assert checkout.calls("charge card") == 4
    assert output["reminder"] == "no reminder"
    assert output["shipped"] is False  # nobody sent "shipped" within 7 days
    assert not files["outbox"].exists()  # so no receipt


async def test_a_declined_card_fails_the_checkout(
    wf_env: WorkflowTestEnv, files: dict[str, Path]
) -> None:
    wf_env.mock_step("checkout", "charge card", error=NonRetryableError("card declined"))
    checkout = await wf_env.create("checkout", params={"cartId": "cart-1"})
    with pytest.raises(InstanceFailed, match="card declined"):
        await checkout.result()
    assert checkout.calls("charge card") == 1  # not retried
    assert not files["orders"].exists()
