"""Expand/contract (docs/adr/0015): a migration's upgrade() only adds, unless the module says
``contract = "<why this may remove or tighten, and when>"``. And `vedina migrate --check` is the
deploy gate: non-zero while this release's migrations are pending, zero on a database a newer
release has already expanded."""

from __future__ import annotations

import ast
import os
import re
import subprocess

import pytest
import sqlalchemy as sa

from tests.conftest import VEDINA
from vedina.storage import migrate

VERSIONS = migrate.MIGRATIONS / "versions"

# Operations that remove or reshape what a running release may read or write.
ALWAYS_CONTRACT = {"drop_table", "drop_column", "rename_table", "drop_constraint", "drop_index",
                   "drop_table_comment", "drop_column_comment"}
# Constraints that new rows of the previous release might violate, unless the table or every
# column they cover is new in the same migration.
TIGHTENING = {"create_unique_constraint", "create_check_constraint", "create_foreign_key", "create_primary_key"}
DESTRUCTIVE_SQL = [
    re.compile(p, re.IGNORECASE) for p in (
        r"\bDROP\s+(TABLE|COLUMN|INDEX|CONSTRAINT|FOREIGN\s+KEY|PRIMARY\s+KEY|VIEW|DATABASE)\b",
        r"\bRENAME\b", r"\bTRUNCATE\b", r"\bDELETE\s+FROM\b",
        r"\bALTER\s+TABLE\b.*\b(MODIFY|CHANGE|ALTER\s+COLUMN)\b", r"\bNOT\s+NULL\b",
    )
]


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_false(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def _string(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):  # f-string: its literal parts
        return " ".join(v.value for v in node.values if isinstance(v, ast.Constant))
    return None


def _column_nullable_without_default(column: ast.expr) -> bool:
    return (isinstance(column, ast.Call) and _is_false(_keyword(column, "nullable"))
            and _keyword(column, "server_default") is None)


def _operations(function: ast.FunctionDef, functions: dict[str, ast.FunctionDef], seen: set[str]):
    """(table, operation, args, call) for every op.* / batch_op.* call, following module helpers."""
    seen.add(function.name)
    batch_tables: dict[str, str | None] = {}  # `with op.batch_alter_table("t") as batch_op`
    for node in ast.walk(function):
        if isinstance(node, ast.With):
            for item in node.items:
                call = item.context_expr
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                        and call.func.attr == "batch_alter_table" and isinstance(item.optional_vars, ast.Name)):
                    batch_tables[item.optional_vars.id] = _string(call.args[0]) if call.args else None
    for node in ast.walk(function):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Name) and node.func.id in functions and node.func.id not in seen:
            yield from _operations(functions[node.func.id], functions, seen)
        elif isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
            receiver, operation = node.func.value.id, node.func.attr
            args = list(node.args)
            if receiver in batch_tables:
                yield batch_tables[receiver], operation, args, node
            elif receiver == "op":
                # op.X(table, ...), except constraints and indexes: op.X(name, table, ...)
                named = operation in TIGHTENING or operation.startswith(("create_index", "drop_index"))
                table_at = 1 if named else 0
                table = _string(args[table_at]) if operation != "execute" and len(args) > table_at else None
                yield table, operation, args[table_at + 1:] if operation != "execute" else args, node


def destructive_operations(source: str) -> list[str]:
    """What upgrade() (and the module functions it calls) does that is not expand-only."""
    module = ast.parse(source)
    functions = {f.name: f for f in module.body if isinstance(f, ast.FunctionDef)}
    if "upgrade" not in functions:
        return ["no upgrade()"]
    operations = list(_operations(functions["upgrade"], functions, set()))
    created_tables = {table for table, operation, _, _ in operations if operation == "create_table"}
    added_columns: set[tuple[str | None, str | None]] = set()
    for table, operation, args, node in operations:
        if operation == "add_column":
            column = args[0] if args else _keyword(node, "column")
            if isinstance(column, ast.Call) and column.args:
                added_columns.add((table, _string(column.args[0])))
    found: list[str] = []
    for table, operation, args, node in operations:
        where = f"line {node.lineno}: {operation}"
        if operation in ALWAYS_CONTRACT:
            found.append(where)
        elif operation == "add_column":
            if _column_nullable_without_default(args[0] if args else _keyword(node, "column")):
                found.append(f"{where} NOT NULL without a server default")
        elif operation == "alter_column":
            if _keyword(node, "new_column_name") is not None:
                found.append(f"{where} renames")
            if _keyword(node, "type_") is not None:
                found.append(f"{where} changes the type")
            if _is_false(_keyword(node, "nullable")):
                found.append(f"{where} makes a column NOT NULL")
        elif operation in TIGHTENING or (operation == "create_index" and _keyword(node, "unique") is not None
                                         and not _is_false(_keyword(node, "unique"))):
            columns = next((a for a in args if isinstance(a, ast.List)), None)
            names = {_string(c) for c in columns.elts} if columns else {None}
            if table not in created_tables and not all((table, n) in added_columns for n in names):
                found.append(f"{where} on existing columns")
        elif operation == "execute":
            sql = _string(args[0] if args else _keyword(node, "sqltext"))
            if sql is None:
                found.append(f"{where} of SQL this check cannot read")
            elif any(p.search(sql) for p in DESTRUCTIVE_SQL):
                found.append(f"{where} {sql[:60]!r}")
    return found


def contract_reason(source: str) -> str | None:
    for node in ast.parse(source).body:
        if (isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["contract"]):
            return _string(node.value) or ""
    return None


def rule_violations(source: str) -> list[str]:
    operations = destructive_operations(source)
    reason = contract_reason(source)
    if reason is None:
        return [f"not expand-only, and no `contract = \"reason\"`: {op}" for op in operations]
    if len(reason.split()) < 5:
        return ["`contract` must explain, in a sentence, why this may remove or tighten"]
    if not operations:
        return ["marked `contract` but only expands: drop the marker"]
    return []


@pytest.mark.parametrize("path", sorted(VERSIONS.glob("[0-9]*.py")), ids=lambda p: p.stem)
def test_every_migration_only_expands_or_says_why_it_contracts(path):
    assert rule_violations(path.read_text()) == []


MIGRATION = '''
import sqlalchemy as sa
from alembic import op
{marker}

def upgrade() -> None:
{body}
'''


def migration(body: str, marker: str = "") -> str:
    return MIGRATION.format(marker=marker, body="\n".join("    " + line for line in body.splitlines()))


@pytest.mark.parametrize("body", [
    'op.drop_column("movies", "title")',
    'op.drop_table("movies")',
    'op.rename_table("movies", "films")',
    'op.alter_column("movies", "title", new_column_name="name")',
    'op.alter_column("movies", "title", type_=sa.String(50))',
    'op.alter_column("movies", "title", nullable=False)',
    'op.add_column("movies", sa.Column("rank", sa.Integer(), nullable=False))',
    'op.create_unique_constraint("uq_movies_title", "movies", ["title"])',
    'op.create_index("ix_movies_title", "movies", ["title"], unique=True)',
    'op.execute("ALTER TABLE movies DROP COLUMN title")',
    'op.execute("DELETE FROM movies")',
    'op.execute(f"ALTER TABLE {name} MODIFY title VARCHAR(50) NOT NULL")',
    'op.execute(statement)',
    'with op.batch_alter_table("movies") as batch_op:\n    batch_op.drop_column("title")',
    'helper()\n\ndef helper():\n    op.drop_index("ix_movies_title")',
])
def test_a_destructive_step_without_a_contract_marker_fails(body):
    assert rule_violations(migration(body)) != []
    marker = 'contract = "the release before this one no longer reads the old shape"'
    assert rule_violations(migration(body, marker)) == []


@pytest.mark.parametrize("body", [
    'op.create_table("genres", sa.Column("id", sa.Integer(), primary_key=True))',
    'op.add_column("movies", sa.Column("rank", sa.Integer(), nullable=True))',
    'op.add_column("movies", sa.Column("rank", sa.Integer(), nullable=False, server_default="0"))',
    'op.create_index("ix_movies_title", "movies", ["title"])',
    'op.alter_column("movies", "title", nullable=True)',
    'op.execute("UPDATE movies SET sort_title = LOWER(title)")',
    'with op.batch_alter_table("movies") as batch_op:\n'
    '    batch_op.add_column(sa.Column("parent_id", sa.Integer(), nullable=True))\n'
    '    batch_op.create_foreign_key("fk_parent", "movies", ["parent_id"], ["id"])',
    'op.create_table("tags", sa.Column("id", sa.Integer()))\nop.create_unique_constraint("uq", "tags", ["id"])',
])
def test_expand_only_steps_pass_and_a_needless_marker_fails(body):
    assert rule_violations(migration(body)) == []
    marker = 'contract = "nothing here removes anything at all"'
    assert rule_violations(migration(body, marker)) == ["marked `contract` but only expands: drop the marker"]


def test_a_contract_marker_needs_a_real_reason():
    assert rule_violations(migration('op.drop_table("movies")', 'contract = True')) != []
    assert rule_violations(migration('op.drop_table("movies")', 'contract = "yes"')) != []


# -- the deploy gate, on both profiles -----------------------------------------------------------


def cli_env(settings) -> dict[str, str]:
    env = {**os.environ, "DATA_DIR": settings.data_dir, "LOG_LEVEL": "warning", "VEDINA_ENV": "test"}
    if settings.db_host:
        env.update(DB_HOST=settings.db_host, DB_NAME=settings.db_name, DB_USER=settings.db_user,
                   DB_PASSWORD=settings.db_password)
    return env


def vedina(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([VEDINA, *args], env=cli_env(settings), capture_output=True, text=True, timeout=120)


async def test_migrate_check_fails_while_migrations_are_pending_and_passes_after_migrate(settings, resources):
    def drop_everything(sync_conn) -> None:  # an empty database: every migration pending
        existing = sa.MetaData()
        existing.reflect(sync_conn)
        existing.drop_all(sync_conn)

    async with resources.engine.begin() as conn:
        await conn.run_sync(drop_everything)
    gate = vedina(settings, "migrate", "--check")
    assert gate.returncode == 1, gate.stdout + gate.stderr
    head = migrate.ScriptDirectory.from_config(migrate._alembic_config()).get_current_head()
    assert {"pending migration: 0001", f"pending migration: {head}"} <= set(gate.stdout.splitlines())
    migrated = vedina(settings, "migrate")
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    gate = vedina(settings, "migrate", "--check")
    assert gate.returncode == 0 and "at head and matches the schema" in gate.stdout, gate.stdout + gate.stderr


async def test_a_database_expanded_by_a_newer_release_passes_the_gate_untouched(settings, resources):
    """The old release during a rolling deploy or after a rollback: its gate passes, `vedina migrate`
    leaves the newer schema alone."""
    head = migrate.ScriptDirectory.from_config(migrate._alembic_config()).get_current_head()
    async with resources.engine.begin() as conn:
        await conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
        await conn.execute(sa.text("CREATE TABLE newer_release_table (id INTEGER PRIMARY KEY)"))
    try:
        for args in (("migrate", "--check"), ("migrate",)):
            result = vedina(settings, *args)
            assert result.returncode == 0, result.stdout + result.stderr
            assert "at 9999, newer than this release" in result.stdout
        async with resources.engine.connect() as conn:
            assert (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar_one() == "9999"
    finally:
        async with resources.engine.begin() as conn:
            await conn.execute(sa.text("DROP TABLE newer_release_table"))
            await conn.execute(sa.text("UPDATE alembic_version SET version_num = :head"), {"head": head})
    assert await migrate.newer_revision(settings) is None
