"""Payment provider settings (PAYMENT_PROVIDER, STRIPE_*, PROVIDER_SIM_PORT, the webhook secret)
and the simulator's Stripe-style form decoding."""

from __future__ import annotations

import pytest

from vedina.config import ConfigError, load_settings, provider_webhook_secret, webhook_secret_map
from vedina.provider_sim.forms import FormError, decode_form

STRIPE = {"PAYMENT_PROVIDER": "stripe", "STRIPE_API_KEY": "sk_live_0123456789abcdefghij",
          "WEBHOOK_SECRETS": "stripe:whsec_first_0123456789abcdef,stripe:whsec_second_0123456789abcdef"}


def test_the_defaults_use_the_simulator_on_its_port():
    settings = load_settings({})
    assert (settings.payment_provider, settings.stripe_api_base, settings.provider_sim_port) == ("sim", "", 12111)


@pytest.mark.parametrize(("env", "variable"), [
    ({"PAYMENT_PROVIDER": "paypal"}, "PAYMENT_PROVIDER"),
    ({**STRIPE, "STRIPE_API_KEY": "sk_test_vedina_sim"}, "STRIPE_API_KEY"),
    ({**STRIPE, "STRIPE_API_KEY": "pk_live_0123456789abcdefghij"}, "STRIPE_API_KEY"),
    ({**STRIPE, "WEBHOOK_SECRETS": ""}, "WEBHOOK_SECRETS"),
    ({"STRIPE_API_BASE": "api.stripe.com"}, "STRIPE_API_BASE"),
    ({"STRIPE_API_BASE": "http://127.0.0.1:12111/v1"}, "STRIPE_API_BASE"),
    ({"PROVIDER_SIM_PORT": "70000"}, "PROVIDER_SIM_PORT"),
    ({"PROVIDER_SIM_PORT": "many"}, "PROVIDER_SIM_PORT"),
])
def test_bad_payment_settings_are_refused_naming_the_variable(env, variable):
    with pytest.raises(ConfigError, match=variable):
        load_settings(env)


def test_stripe_uses_the_first_configured_stripe_secret():
    settings = load_settings({**STRIPE, "PAYMENT_PROVIDER": "STRIPE"})
    assert settings.payment_provider == "stripe"
    assert provider_webhook_secret(settings) == b"whsec_first_0123456789abcdef"
    assert len(webhook_secret_map(settings)["stripe"]) == 2


def test_the_simulator_secret_is_derived_from_the_session_secret_when_none_is_configured():
    one = load_settings({"SESSION_SECRET": "a" * 40})
    same = load_settings({"SESSION_SECRET": "a" * 40})
    other = load_settings({"SESSION_SECRET": "b" * 40})
    assert provider_webhook_secret(one) == provider_webhook_secret(same) != provider_webhook_secret(other)
    assert provider_webhook_secret(one).startswith(b"whsec_") and len(provider_webhook_secret(one)) > 32
    assert webhook_secret_map(one)["stripe"] == [provider_webhook_secret(one)]


def test_a_configured_stripe_secret_wins_over_the_derived_one():
    settings = load_settings({"WEBHOOK_SECRETS": "stripe:whsec_configured_0123456789abcdef"})
    assert webhook_secret_map(settings)["stripe"] == [b"whsec_configured_0123456789abcdef"]


def test_forms_nest_hashes_and_lists_as_the_sdk_writes_them():
    assert decode_form(b"invoice_settings[default_payment_method]=pm_1&expand[]=a&expand[]=b&metadata[k]=") == {
        "invoice_settings": {"default_payment_method": "pm_1"}, "expand": ["a", "b"], "metadata": {"k": ""}}
    assert decode_form(b"payment_method_types[0]=card&amount=5") == {"payment_method_types": ["card"], "amount": "5"}


@pytest.mark.parametrize("body", [b"metadata=x&metadata[k]=v", b"metadata[k]=v&metadata=x", b"a]=1", b"a[b][c][d][e][f]=1"])
def test_malformed_form_keys_are_refused(body):
    with pytest.raises(FormError):
        decode_form(body)
