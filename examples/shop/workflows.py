"""The example shop: two workflows that work together.

cart-reminder  One instance per cart, with the cart id as its instance id. It sleeps
               for REMINDER_WAIT, then emails the shopper if the cart was not bought.
checkout       Charges a cart (through a flaky pretend payment API, with retries),
               records the order, and cancels the cart's reminder through the
               CART_REMINDER binding. Then it waits for a "shipped" event and sends a
               receipt.

Nothing here uses the network. carts.json is the database of carts, orders go to
orders.jsonl, and "emails" go to outbox.jsonl.
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from pathlib import Path
from typing import Any

from wf import (
    InstanceNotFound,
    InvalidTransition,
    NonRetryableError,
    StepError,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)

HERE = Path(__file__).resolve().parent
CARTS = HERE / "carts.json"
ORDERS = HERE / "orders.jsonl"
OUTBOX = HERE / "outbox.jsonl"

EMAIL_RETRIES = {"limit": 5, "delay": "10 seconds", "backoff": "exponential"}
_files_lock = threading.Lock()


def load_cart(cart_id: str) -> dict[str, Any]:
    carts = json.loads(CARTS.read_text(encoding="utf-8"))
    if cart_id not in carts:
        raise NonRetryableError(f'cart "{cart_id}" does not exist', "CartNotFound")
    return {"id": cart_id, **carts[cart_id]}


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def append_once(path: Path, record: dict[str, Any], key: str) -> bool:
    """Append ``record`` to a JSON-lines file unless a record with the same ``key``
    value is there already. Steps run at least once, so their writes must be
    idempotent. Returns whether it wrote."""
    with _files_lock:
        if any(r.get(key) == record[key] for r in read_records(path)):
            return False
        with path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")
        return True


def cart_id_of(event: WorkflowEvent) -> str:
    params = event.payload if isinstance(event.payload, dict) else {}
    cart_id = params.get("cartId")
    if not cart_id:
        raise ValueError('params need a "cartId", for example {"cartId": "cart-1"}')
    return str(cart_id)


class CartReminder(WorkflowEntrypoint):
    """Params: {"cartId": "cart-1"}, and optionally a "wait" such as "10 seconds"."""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> dict[str, Any]:
        cart_id = cart_id_of(event)
        wait = event.payload.get("wait", self.env.REMINDER_WAIT)
        await step.sleep("wait before reminding", wait)

        def retrieve_cart() -> dict[str, Any]:
            orders = read_records(ORDERS)
            bought = any(order["cartId"] == cart_id for order in orders)
            return {**load_cart(cart_id), "checkedOut": bought}

        cart = await step.do("retrieve cart", retrieve_cart)
        if cart["checkedOut"]:
            return {"cartId": cart_id, "reminded": False}

        email = {
            "key": f"reminder/{event.instance_id}",
            "to": cart["email"],
            "subject": f"{self.env.SHOP_NAME}: you left something in your cart",
        }
        await step.do(
            "send an email",
            {"retries": EMAIL_RETRIES},
            lambda: append_once(OUTBOX, email, "key"),
        )
        return {"cartId": cart_id, "reminded": True}


class Checkout(WorkflowEntrypoint):
    """Params: {"cartId": "cart-1"}, and optionally "failureRate" (0 to 1) for the
    pretend payment API."""

    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> dict[str, Any]:
        cart_id = cart_id_of(event)
        cart = await step.do("load cart", lambda: load_cart(cart_id))
        total = sum(item["priceCents"] * item["quantity"] for item in cart["items"])
        failure_rate = float(event.payload.get("failureRate", self.env.PAYMENT_FAILURE_RATE))

        def charge_card() -> dict[str, Any]:
            # A real payment API would get event.instance_id as its idempotency key,
            # so that a retried charge is not taken twice.
            if random.random() < failure_rate:
                raise ConnectionError("the payment API did not answer")
            return {"paymentId": f"pay_{uuid.uuid4().hex[:12]}", "amountCents": total}

        payment = await step.do(
            "charge card",
            {"retries": {"limit": 4, "delay": "2 seconds", "backoff": "exponential"}},
            charge_card,
        )
        order = {"orderId": event.instance_id, "cartId": cart_id, **payment}
        await step.do("record order", lambda: append_once(ORDERS, order, "orderId"))

        async def cancel_reminder() -> str:
            # Another workflow, through its binding: the cart's reminder (if there is
            # one) has the cart id as its instance id.
            try:
                reminder = await self.env.CART_REMINDER.get(cart_id)
                await reminder.terminate()
            except InstanceNotFound:
                return "no reminder"
            except InvalidTransition:
                return "already finished"
            return "cancelled"

        reminder = await step.do("cancel cart reminder", cancel_reminder)
        summary = {"orderId": event.instance_id, "amountCents": total, "reminder": reminder}

        # The warehouse reports the shipment:
        #   wf instances send-event checkout <id> --type shipped --payload '{"tracking": "1Z999"}'
        try:
            shipment = await step.wait_for_event(
                "wait for shipment", type="shipped", timeout="7 days"
            )
        except StepError:
            return {**summary, "shipped": False}
        details = shipment.payload if isinstance(shipment.payload, dict) else {}
        tracking = details.get("tracking", "unknown")

        receipt = {
            "key": f"receipt/{event.instance_id}",
            "to": cart["email"],
            "subject": f"{self.env.SHOP_NAME}: your order is on its way ({tracking})",
        }
        await step.do(
            "send receipt",
            {"retries": EMAIL_RETRIES},
            lambda: append_once(OUTBOX, receipt, "key"),
        )
        return {**summary, "shipped": True, "tracking": tracking}
