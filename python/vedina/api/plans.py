"""/api/plans: what a subscription can buy (public), managed by admins (``billing:manage``)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from robyn import Request, SubRouter

from vedina.api.bodies import decode_body
from vedina.api.params import path_int
from vedina.http.auth import requires
from vedina.http.operation import doc
from vedina.http.responses import json_response
from vedina.services.plans import Plan, PlanList
from vedina.state import AppState

Tier = Literal["basic", "standard", "premium"]
Period = Literal["month", "year"]
Code = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9-]*\Z")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+\Z")]
Description = Annotated[str, msgspec.Meta(max_length=500, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*\Z")]
# Minor units (cents): integers only; JSON floats are refused by the type. At least the smallest
# charge providers accept (an offer that costs nothing is PLAYBACK_DEFAULT_PLAN, not a plan).
Price = Annotated[int, msgspec.Meta(ge=50, le=100_000_000)]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[a-z]{3}\Z")]
Screens = Annotated[int, msgspec.Meta(ge=1, le=10)]
Height = Annotated[int, msgspec.Meta(ge=144, le=4320)]
TrialDays = Annotated[int, msgspec.Meta(ge=0, le=90)]


class PlanCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    code: Code
    name: Name
    tier: Tier
    description: Description = ""
    active: bool = True
    price_minor: Price
    currency: Currency
    billing_period: Period = "month"
    screens: Screens
    max_height: Height
    trial_days: TrialDays = 0


class PlanUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET
    price_minor: Price | msgspec.UnsetType = msgspec.UNSET
    currency: Currency | msgspec.UnsetType = msgspec.UNSET
    billing_period: Period | msgspec.UnsetType = msgspec.UNSET
    screens: Screens | msgspec.UnsetType = msgspec.UNSET
    max_height: Height | msgspec.UnsetType = msgspec.UNSET
    trial_days: TrialDays | msgspec.UnsetType = msgspec.UNSET


TERMS = ("price_minor", "currency", "billing_period", "screens", "max_height", "trial_days")


def register(router: SubRouter, state: AppState) -> None:
    def csrf():
        return state.services.csrf

    @router.get("/", openapi_name="List the plans on offer")
    @doc(public=True, answers={200: PlanList})
    async def list_plans(request: Request):
        """Cheapest first; prices in integer minor units of ``currency``."""
        return json_response(await state.services.plans.list())

    @router.get("/:id", openapi_name="Get a plan")
    @doc(public=True, answers={200: Plan})
    async def get_plan(request: Request):
        return json_response(await state.services.plans.get(plan_id=path_int(request, "id")))

    @router.post("/", openapi_name="Create a plan")
    @doc(body=PlanCreate, answers={201: Plan}, errors=("409 conflict",))
    @requires("billing:manage", csrf_tokens=csrf)
    async def create_plan(request: Request):
        body = decode_body(request, PlanCreate)
        plan = await state.services.plans.create(
            code=body.code, name=body.name, tier=body.tier, description=body.description, active=body.active,
            terms={name: getattr(body, name) for name in TERMS},
        )
        return json_response(plan, status=201)

    @router.patch("/:id", openapi_name="Change a plan (new terms add a version)")
    @doc(body=PlanUpdate, answers={200: Plan})
    @requires("billing:manage", csrf_tokens=csrf)
    async def update_plan(request: Request):
        """Existing subscriptions keep the version they bought; new subscribers get the new terms."""
        body = decode_body(request, PlanUpdate)
        changes = {k: v for k, v in msgspec.structs.asdict(body).items() if v is not msgspec.UNSET}
        return json_response(await state.services.plans.update(plan_id=path_int(request, "id"), changes=changes))
