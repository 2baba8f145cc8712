"""Settings: every variable parsed once, bad values named, production refuses weak secrets."""

from __future__ import annotations

import base64

import pytest

from vedina.config import ENV_VARS, ConfigError, Settings, load_settings


def test_defaults_select_the_embedded_profile():
    settings = load_settings({})
    assert settings.storage_profile == "embedded"
    assert settings.port == 8000
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert len(settings.session_secret) >= 32  # a random per-run development secret


def test_db_host_selects_mysql_without_putting_the_password_in_the_url():
    settings = load_settings({"DB_HOST": "db.internal", "DB_PASSWORD": "s3cret", "DB_NAME": "catalog"})
    assert settings.storage_profile == "real"
    assert settings.database_url == "mysql+asyncmy://vedina@db.internal:3306/catalog?charset=utf8mb4"
    assert "s3cret" not in settings.database_url


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PORT": "eighty"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"WORKERS": "-1"}, "WORKERS"),
        ({"CLUSTER_ENABLED": "maybe"}, "CLUSTER_ENABLED"),
        ({"LOG_LEVEL": "chatty"}, "LOG_LEVEL"),
        ({"SERVER": "apache"}, "SERVER"),
        ({"MAX_BODY_BYTES": "10"}, "MAX_BODY_BYTES"),
        ({"DB_POOL_SIZE": "0"}, "DB_POOL_SIZE"),
    ],
)
def test_bad_values_name_the_variable(env, named):
    with pytest.raises(ConfigError, match=named):
        load_settings(env)


@pytest.mark.parametrize("secret", ["", "change-me", "short-but-not-default"])
def test_production_refuses_default_or_short_secret(secret):
    with pytest.raises(ConfigError, match="SESSION_SECRET"):
        load_settings({"VEDINA_ENV": "production", "SESSION_SECRET": secret})


PRODUCTION = {
    "VEDINA_ENV": "production",
    "SESSION_SECRET": "x" * 16 + "9f8e7d6c5b4a39281706f5e4d3c2b1a0",
    "API_KEY_ENCRYPTION_KEY": base64.b64encode(bytes(range(32))).decode(),
    "PAYMENT_PROVIDER": "stripe", "STRIPE_API_KEY": "sk_live_" + "a1B2" * 6,
    "WEBHOOK_SECRETS": "stripe:whsec_" + "c3D4" * 8,
}


def test_production_accepts_long_random_secrets():
    assert load_settings(PRODUCTION).env == "production"


def test_production_refuses_the_payment_simulator():
    with pytest.raises(ConfigError, match="PAYMENT_PROVIDER"):
        load_settings({**PRODUCTION, "PAYMENT_PROVIDER": "sim"})


def test_production_requires_an_api_key_encryption_key():
    with pytest.raises(ConfigError, match="API_KEY_ENCRYPTION_KEY"):
        load_settings({**PRODUCTION, "API_KEY_ENCRYPTION_KEY": ""})
    with pytest.raises(ConfigError, match="API_KEY_ENCRYPTION_KEY"):
        load_settings({**PRODUCTION, "API_KEY_ENCRYPTION_KEY": base64.b64encode(b"short").decode()})


@pytest.mark.parametrize("value", ["sim:short", "Bad Provider:" + "s" * 30, "nocolon"])
def test_bad_webhook_secrets_are_refused(value):
    with pytest.raises(ConfigError, match="WEBHOOK_SECRETS"):
        load_settings({"WEBHOOK_SECRETS": value})


@pytest.mark.parametrize("value", ["lots", "10/xs", "0/1s"])
def test_bad_rate_limits_name_the_variable(value):
    with pytest.raises(ConfigError, match="RATE_LIMIT_API"):
        load_settings({"RATE_LIMIT_API": value})


def test_cluster_disabled_means_one_worker():
    assert load_settings({"CLUSTER_ENABLED": "false", "WORKERS": "8"}).worker_count == 1
    assert load_settings({"WORKERS": "3"}).worker_count == 3


def test_every_variable_maps_to_a_settings_field():
    fields = set(Settings.__struct_fields__)
    assert set(ENV_VARS.values()) <= fields
