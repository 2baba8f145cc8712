"""deploy/: the systemd units pass `systemd-analyze verify`, the environment template lists every
variable with its true default, and the Containerfile and compose file agree with Vedina."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
import yaml

from vedina.config import ENV_VARS, Settings, load_settings
from vedina.storage.broker import SHUTDOWN_GRACE

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = DEPLOY / "systemd"
INSTALLED_VEDINA = "/opt/vedina/venv/bin/vedina"  # where docs/drafts/deploy.md installs it
# The wheel build of the Containerfile's builder stage; tests/ops/test_wheel.py runs it too.
WHEEL_BUILD = ["maturin", "build", "--release", "--locked", "--out"]
VEDINA = str(Path(sys.executable).with_name("vedina"))  # a real executable for verify
DEFAULTS = {f.name: f.default for f in msgspec.structs.fields(Settings)}
# What a production host fills in by hand (the template leaves them empty on purpose).
SECRETS = {
    "SESSION_SECRET": "s" * 48,
    "API_KEY_ENCRYPTION_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    "DB_PASSWORD": "database-password",
    "STRIPE_API_KEY": "sk_live_0123456789abcdefABCDEF",
    "WEBHOOK_SECRETS": "stripe:whsec_0123456789abcdefghijklmnop",
    "AMQP_PASSWORD": "amqp-password",
}


# -- systemd ---------------------------------------------------------------------------


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # keys are case-sensitive
    parser.read(UNITS / name)
    return parser


def environment_files(name: str) -> list[str]:
    """Every EnvironmentFile= line of a unit, in order (configparser keeps only the last)."""
    return [line.partition("=")[2].strip() for line in (UNITS / name).read_text().splitlines()
            if line.startswith("EnvironmentFile=")]


def rendered_units(directory: Path, *, vedina: str, edit=lambda name, text: text) -> list[Path]:
    """Copies of the units with the installed path replaced by a real executable (verify checks that
    every Exec command exists), a template as its instance ``a``; ``edit`` may break one."""
    paths = []
    for source in sorted([*UNITS.glob("*.service"), *UNITS.glob("*.timer")]):
        target = directory / source.name.replace("@.", "@a.")
        target.write_text(edit(source.name, source.read_text().replace(INSTALLED_VEDINA, vedina)))
        paths.append(target)
    return paths


def verify(paths: list[Path]) -> tuple[bool, str]:
    """`systemd-analyze verify`: it exits 0 on mere warnings (an unknown key, a bad value is
    "ignoring"), so any output at all counts as a failure too."""
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", *map(str, paths)],
                            capture_output=True, text=True, timeout=60, cwd=paths[0].parent)
    output = (result.stdout + result.stderr).strip()
    return result.returncode == 0 and not output, output


needs_systemd_analyze = pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")


@needs_systemd_analyze
def test_units_pass_systemd_analyze_verify(tmp_path):
    ok, output = verify(rendered_units(tmp_path, vedina=VEDINA))
    assert ok, output


@needs_systemd_analyze
@pytest.mark.parametrize(("breakage", "expected"), [
    (lambda text: text.replace("Restart=on-failure", "Restart=sometimes"), "restart specifier"),
    (lambda text: text.replace("ProtectSystem=strict", "ProtectSytem=strict"), "Unknown key"),
    (lambda text: text.replace("ExecStart=/", "ExecStart=/nonexistent/"), "not executable"),
    (lambda text: text.replace("[Service]", "[Servce]"), "Unknown section"),
])
def test_verify_catches_a_broken_unit(tmp_path, breakage, expected):
    paths = rendered_units(tmp_path, vedina=VEDINA,
                           edit=lambda name, text: breakage(text) if name == "vedina-api.service" else text)
    ok, output = verify(paths)
    assert not ok and expected in output, output


@needs_systemd_analyze
def test_units_are_hardened_to_an_ok_exposure(tmp_path):
    for path in [p for p in rendered_units(tmp_path, vedina=VEDINA) if p.suffix == ".service"]:
        result = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", "--threshold=40",
                                 str(path)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert result.returncode == 0, result.stdout[-500:] + result.stderr
        exposure = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout).group(1))
        assert exposure <= 4.0, f"{path.name}: exposure {exposure}"


def test_units_run_vedina_as_a_dedicated_user_with_the_promised_hardening():
    expected = {"User": "vedina", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
                "NoNewPrivileges": "yes", "EnvironmentFile": "/etc/vedina/vedina.env", "StateDirectory": "vedina"}
    for name in ("vedina-api.service", "vedina-worker.service", "vedina-migrate.service", "vedina-backup.service"):
        service = unit(name)["Service"]
        assert {key: service.get(key) for key in expected} == expected, name
        assert "/var/lib/vedina" in service["ReadWritePaths"].split(), name
    for name, command in (("vedina-api.service", "serve"), ("vedina-worker.service", "worker")):
        section = unit(name)
        service = section["Service"]
        assert service["ExecStart"] == f"{INSTALLED_VEDINA} {command}"
        assert service["ExecStartPre"] == f"{INSTALLED_VEDINA} migrate --check"  # the deploy gate
        assert service["Restart"] == "on-failure" and int(service["LimitNOFILE"]) >= 65536
        assert service["KillMode"] == "mixed"  # SIGTERM to the main process, which drains its workers
        assert "vedina-migrate.service" in section["Unit"]["After"].split()
        assert "vedina-migrate.service" in section["Unit"]["Wants"].split()
    migrate = unit("vedina-migrate.service")["Service"]
    assert (migrate["Type"], migrate["ExecStart"]) == ("oneshot", f"{INSTALLED_VEDINA} migrate")
    assert unit("vedina-api.service")["Service"]["ExecReload"] == "/bin/kill -HUP $MAINPID"


def test_the_instance_template_is_the_api_unit_plus_a_per_instance_environment_file():
    single, template = unit("vedina-api.service"), unit("vedina-api@.service")
    assert environment_files("vedina-api.service") == ["/etc/vedina/vedina.env"]
    # Read in this order: the instance's file (PORT, ...) overrides the shared one.
    assert environment_files("vedina-api@.service") == ["/etc/vedina/vedina.env", "/etc/vedina/%i.env"]
    for section in ("Unit", "Service", "Install"):
        differing = {key for key in set(single[section]) | set(template[section])
                     if key not in ("Description", "EnvironmentFile")
                     and single[section].get(key) != template[section].get(key)}
        assert differing == set(), f"[{section}] differs from vedina-api.service: {sorted(differing)}"
    assert "%i" in template["Unit"]["Description"]


def test_backup_runs_daily_as_vedina_with_a_private_umask():
    units = sorted(p.name for p in [*UNITS.glob("*.service"), *UNITS.glob("*.timer")])
    assert {"vedina-backup.service", "vedina-backup.timer"} <= set(units)  # so verify checks them too
    backup = unit("vedina-backup.service")
    service = backup["Service"]
    assert (service["Type"], service["ExecStart"]) == ("oneshot", f"{INSTALLED_VEDINA} backup")
    assert (service["User"], service["Group"], service["UMask"]) == ("vedina", "vedina", "0077")
    assert "Install" not in backup  # started by its timer only
    timer = unit("vedina-backup.timer")
    assert timer["Timer"]["OnCalendar"] == "*-*-* 02:15:00" and timer["Timer"]["Persistent"] == "true"
    assert timer["Timer"]["RandomizedDelaySec"] and timer["Timer"]["Unit"] == "vedina-backup.service"
    assert timer["Install"]["WantedBy"] == "timers.target"


@needs_systemd_analyze
def test_verify_catches_a_broken_timer(tmp_path):
    paths = rendered_units(tmp_path, vedina=VEDINA, edit=lambda name, text: text.replace(
        "OnCalendar=*-*-* 02:15:00", "OnCalendar=daily at 2") if name == "vedina-backup.timer" else text)
    ok, output = verify(paths)
    assert not ok and "calendar specification" in output, output


def seconds(text: str) -> int:
    return int(text.removesuffix("s"))


def test_stop_timeouts_outlast_the_graceful_drains():
    template = environment_template()
    shutdown = int(template.get("SHUTDOWN_TIMEOUT", (None, str(DEFAULTS["shutdown_timeout"])))[1])
    assert seconds(unit("vedina-api.service")["Service"]["TimeoutStopSec"]) > shutdown
    assert seconds(unit("vedina-worker.service")["Service"]["TimeoutStopSec"]) > SHUTDOWN_GRACE


def test_units_may_write_where_the_template_puts_data():
    data_dir = environment_template()["DATA_DIR"][1]
    writable = unit("vedina-api.service")["Service"]["ReadWritePaths"].split()
    assert any(data_dir == path or data_dir.startswith(path + "/") for path in writable)


# -- environment file template ----------------------------------------------------------

_LINE = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


def environment_template(text: str | None = None) -> dict[str, tuple[bool, str]]:
    """VAR -> (active, value) for every ``VAR=value`` or ``# VAR=value`` line."""
    entries: dict[str, tuple[bool, str]] = {}
    for line in (text if text is not None else (DEPLOY / "vedina.env").read_text()).splitlines():
        match = _LINE.match(line.strip())
        if match:
            commented, var, value = match.groups()
            assert var not in entries, f"{var} is listed twice"
            entries[var] = (commented is None, value)
    return entries


def template_problems(entries: dict[str, tuple[bool, str]]) -> list[str]:
    problems = [f"missing: {var}" for var in ENV_VARS if var not in entries]
    problems += [f"not a Vedina variable: {var}" for var in entries if var not in ENV_VARS]
    for var, (active, value) in entries.items():
        if active or var not in ENV_VARS:
            continue
        field = ENV_VARS[var]
        default = DEFAULTS[field]
        if (value == "") != (default == ""):
            problems.append(f"{var}: shows {value!r}, the default is {default!r}")
        elif value and getattr(load_settings({var: value}), field) != default:
            problems.append(f"{var}: shows {value!r}, the default is {default!r}")
    return problems


def test_template_lists_every_variable_with_its_true_default():
    assert template_problems(environment_template()) == []


def test_struct_defaults_are_what_an_empty_environment_loads():
    loaded = load_settings({})
    assert {f: getattr(loaded, f) for f in DEFAULTS if f != "session_secret"} == \
           {f: d for f, d in DEFAULTS.items() if f != "session_secret"}


def test_template_check_catches_a_missing_an_unknown_and_a_wrong_default():
    text = (DEPLOY / "vedina.env").read_text()
    assert "missing: PORT" in template_problems(environment_template(text.replace("# PORT=8000\n", "")))
    assert "not a Vedina variable: PORTS" in template_problems(environment_template(text + "# PORTS=1\n"))
    assert template_problems(environment_template(text.replace("# PORT=8000", "# PORT=8001"))) == \
        ["PORT: shows '8001', the default is 8000"]
    assert template_problems(environment_template(text.replace("# SMTP_URL=", "# SMTP_URL=smtp://x"))) == \
        ["SMTP_URL: shows 'smtp://x', the default is ''"]


def test_template_with_its_secrets_filled_is_a_valid_production_configuration():
    env = {var: value for var, (active, value) in environment_template().items() if active}
    assert env["VEDINA_ENV"] == "production"
    env.update({var: value for var, value in SECRETS.items() if var in env})
    settings = load_settings(env)
    assert settings.storage_profile == "real" and settings.payment_provider == "stripe"


# -- Containerfile -------------------------------------------------------------------------


def containerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", (DEPLOY / "Containerfile").read_text())
    instructions = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def stages() -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for keyword, rest in containerfile():
        if keyword == "FROM":
            image, _, name = rest.partition(" AS ")
            current = found.setdefault(name.strip(), [("FROM", image.strip())])
        else:
            current.append((keyword, rest))
    return found


def test_containerfile_builds_the_wheel_in_a_builder_stage_and_runs_it_slim_as_non_root():
    found = stages()
    assert list(found) == ["builder", "runtime"]
    builder, runtime = found["builder"], found["runtime"]
    assert builder[0][1].split("/")[-1].startswith("rust:")
    builds = [shlex.split(rest) for keyword, rest in builder if keyword == "RUN" and "maturin build" in rest]
    assert len(builds) == 1 and builds[0][:len(WHEEL_BUILD)] == WHEEL_BUILD, builds
    assert runtime[0][1].split("/")[-1].startswith("python:3.11-slim")
    copies = [rest for keyword, rest in runtime if keyword == "COPY"]
    assert copies == ["--from=builder /dist/ /tmp/dist/"]  # only the wheel crosses over
    installs = [rest for keyword, rest in runtime if keyword == "RUN" and "pip install" in rest]
    assert len(installs) == 1 and "/tmp/dist/*.whl" in installs[0] and " -e " not in installs[0]
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users == ["vedina"]
    assert [keyword for keyword, _ in runtime].index("USER") > max(
        i for i, (keyword, _) in enumerate(runtime) if keyword == "RUN")  # nothing runs as root after
    assert ("EXPOSE", "8000") in runtime
    healthcheck = next(rest for keyword, rest in runtime if keyword == "HEALTHCHECK")
    assert "/health" in healthcheck
    assert ("CMD", '["vedina", "serve"]') in runtime


def test_containerfile_environment_names_only_vedina_variables():
    env_lines = [rest for keyword, rest in stages()["runtime"] if keyword == "ENV"]
    names = {pair.split("=", 1)[0] for line in env_lines for pair in shlex.split(line)}
    assert names - {"PATH", "PYTHONUNBUFFERED"} <= set(ENV_VARS), names
    values = dict(pair.split("=", 1) for line in env_lines for pair in shlex.split(line))
    assert values["PORT"] == "8000" and values["HOST"] == "0.0.0.0"


# -- compose.yaml ------------------------------------------------------------------------------


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


_INTERPOLATION = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?([-?])([^}]*))?\}")


def interpolate(value: str, environ: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}."""
    def one(match: re.Match) -> str:
        name, kind, rest = match.groups()
        if name in environ:
            return environ[name]
        if kind == "-":
            return rest
        raise AssertionError(f"compose needs {name}: {rest}")
    return _INTERPOLATION.sub(one, str(value))


def test_compose_has_the_real_profile_services_and_only_nginx_publishes_a_port():
    services = compose()["services"]
    assert set(services) == {"mariadb", "redis", "rabbitmq", "nginx", "api", "worker", "migrate"}
    assert [name for name, service in services.items() if "ports" in service] == ["nginx"]
    assert interpolate(services["nginx"]["ports"][0], {}) == "8080:80"
    assert services["api"]["expose"] == ["8000"]
    for name in ("api", "worker", "migrate"):
        assert services[name]["build"] == {"context": "..", "dockerfile": "deploy/Containerfile"}
        assert (DEPLOY / ".." / services[name]["build"]["dockerfile"]).is_file()
    assert services["migrate"]["command"] == ["vedina", "migrate"] and services["migrate"]["restart"] == "no"
    assert services["api"]["command"] == ["vedina", "serve"]
    assert services["worker"]["command"] == ["vedina", "worker"]


def test_compose_starts_api_and_worker_after_a_successful_migration_on_healthy_services():
    services = compose()["services"]
    healthy = {"condition": "service_healthy"}
    for name in ("api", "worker"):
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"},
            "mariadb": healthy, "redis": healthy, "rabbitmq": healthy,
        }
    assert services["migrate"]["depends_on"] == {"mariadb": healthy}
    assert services["nginx"]["depends_on"] == {"api": healthy}
    for name in ("mariadb", "redis", "rabbitmq", "worker", "nginx"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name


def test_compose_passes_only_vedina_variables_and_a_valid_configuration():
    services = compose()["services"]
    for name in ("api", "worker", "migrate"):
        env = services[name]["environment"]
        assert set(env) <= set(ENV_VARS), set(env) - set(ENV_VARS)
        settings = load_settings({var: interpolate(value, SECRETS) for var, value in env.items()})
        assert settings.storage_profile == "real" and settings.env == "production"
        # The addresses are the compose services.
        assert settings.db_host == "mariadb" and settings.redis_url.startswith("redis://redis:")
        assert "@rabbitmq:5672" in settings.amqp_url
    mariadb = services["mariadb"]["environment"]
    api = services["api"]["environment"]
    assert (mariadb["MARIADB_DATABASE"], mariadb["MARIADB_USER"], mariadb["MARIADB_PASSWORD"]) == \
           (api["DB_NAME"], api["DB_USER"], api["DB_PASSWORD"])


def test_compose_renders_the_repository_nginx_config_with_every_placeholder_filled():
    nginx = compose()["services"]["nginx"]
    mount = next(v for v in nginx["volumes"] if v.startswith("../nginx/vedina.conf:"))
    assert mount.split(":")[1].startswith("/etc/nginx/templates/") and mount.split(":")[1].endswith(".template")
    placeholders = set(re.findall(r"\$\{(VEDINA_[A-Z_]+)\}", (ROOT / "nginx" / "vedina.conf").read_text()))
    env = nginx["environment"]
    assert placeholders and placeholders <= set(env)
    assert all(re.match(env["NGINX_ENVSUBST_FILTER"], name) for name in placeholders)
    api = compose()["services"]["api"]
    assert env["VEDINA_UPSTREAM"] == f"api:{api['environment']['PORT']}"
    # nginx sends the media files the app names: same directory, from the same volume.
    assert env["VEDINA_MEDIA_ROOT"] == api["environment"]["MEDIA_ROOT"]
    assert "vedina-data:/var/lib/vedina:ro" in nginx["volumes"] and "vedina-data:/var/lib/vedina" in api["volumes"]
