"""``billing.receipt`` and ``billing.notice``: the emails billing sends, in HTML and plain text.

A receipt follows every succeeded payment; a notice every transition the
account holder should hear of (activated, trial started, payment failed,
canceled, expired, plan changed). Values are escaped in the HTML part; amounts
are integer minor units shown with the currency's two decimals.
"""

from __future__ import annotations

import html
import logging
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

from vedina.config import Settings
from vedina.services.payments import RECEIPT_TOPIC
from vedina.services.subscriptions import NOTICE_TOPIC
from vedina.storage.mailer import MailTransport
from vedina.storage.payments import PaymentRepository
from vedina.storage.plans import PlanRepository
from vedina.storage.subscriptions import SubscriptionRepository
from vedina.storage.users import UserRepository

log = logging.getLogger(__name__)

__all__ = ["NOTICE_TOPIC", "RECEIPT_TOPIC", "notice_handler", "receipt_handler"]

NOTICES = {
    "activated": ("Your Vedina subscription is active", "Your {plan} subscription is active. Enjoy watching!"),
    "trial_started": ("Your Vedina trial has started", "Your {plan} trial has started; it ends on {period_end}."),
    "payment_failed": ("We could not take your payment",
                       "The payment for your {plan} subscription was declined. Update your payment method to keep "
                       "watching."),
    "canceled": ("Your Vedina subscription has ended", "Your {plan} subscription is canceled."),
    "expired": ("Your Vedina subscription has expired", "Your {plan} subscription has expired."),
    "upgraded": ("Your plan has changed", "You are now on the {plan} plan."),
    "downgraded": ("Your plan has changed", "You are now on the {plan} plan."),
}


def money(amount_minor: int, currency: str) -> str:
    """``1999, "usd"`` -> ``"19.99 USD"`` (integer arithmetic, no floats)."""
    sign = "-" if amount_minor < 0 else ""
    whole, cents = divmod(abs(amount_minor), 100)
    return f"{sign}{whole}.{cents:02d} {currency.upper()}"


def message(settings: Settings, *, to: str, subject: str, lines: list[tuple[str, str]], intro: str) -> EmailMessage:
    """A multipart/alternative email: the text part, and an HTML part with every value escaped."""
    mail = EmailMessage()
    mail["From"] = settings.mail_from
    mail["To"] = to
    mail["Subject"] = subject
    mail["Message-ID"] = make_msgid(domain="vedina.invalid")
    text = intro + "\n\n" + "".join(f"{label}: {value}\n" for label, value in lines)
    mail.set_content(text)
    rows = "".join(f"<tr><th align=\"left\">{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
                   for label, value in lines)
    mail.add_alternative(
        f"<!doctype html><html><body><p>{html.escape(intro)}</p><table>{rows}</table></body></html>", subtype="html",
    )
    return mail


def receipt_handler(*, settings: Settings, users: UserRepository, payments: PaymentRepository,
                    plans: PlanRepository, transport: MailTransport):
    async def handle(payload: dict[str, Any]) -> None:
        payment = await payments.read(int(payload["payment_id"]))
        if payment is None or payment["status"] != "succeeded":
            return
        user = await users.get(payment["user_id"])
        if user is None or user["status"] == "deleted":
            return
        plan = await plans.version_of(payment["plan_version_id"]) if payment["plan_version_id"] else None
        lines = [
            ("Receipt", f"#{payment['id']}"),
            ("Date", payment["succeeded_at"].strftime("%Y-%m-%d %H:%M UTC")),
            ("Plan", plan["name"] if plan else "-"),
            ("For", {"initial": "first period", "renewal": f"period {payment['period_number']}",
                     "upgrade": "plan upgrade (prorated)"}.get(payment["purpose"], payment["purpose"])),
            ("Amount", money(payment["amount_minor"], payment["currency"])),
        ]
        await transport.send(message(settings, to=user["email"], subject=f"Your Vedina receipt #{payment['id']}",
                                     lines=lines, intro=f"Hello {user['display_name']}, thank you for your payment."))
        log.info("receipt sent", extra={"payment_id": payment["id"]})

    return handle


def notice_handler(*, settings: Settings, users: UserRepository, subscriptions: SubscriptionRepository,
                   plans: PlanRepository, transport: MailTransport):
    async def handle(payload: dict[str, Any]) -> None:
        event = await subscriptions.event(int(payload["event_id"]))
        if event is None or event["event"] not in NOTICES:
            return
        subscription = await subscriptions.read(event["subscription_id"])
        user = await users.get(subscription["user_id"])
        if user is None or user["status"] == "deleted":
            return
        plan = await plans.version_of(subscription["plan_version_id"])
        subject, text = NOTICES[event["event"]]
        period_end = subscription["current_period_end"]
        intro = f"Hello {user['display_name']}. " + text.format(
            plan=plan["name"], period_end=period_end.strftime("%Y-%m-%d") if period_end else "-")
        lines = [("Plan", plan["name"]), ("Status", subscription["status"]),
                 ("Price", money(plan["price_minor"], plan["currency"]) + f" per {plan['billing_period']}")]
        await transport.send(message(settings, to=user["email"], subject=subject, lines=lines, intro=intro))

    return handle
