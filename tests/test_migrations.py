"""Schema migrations: a v1 store written by the code before migrations existed
(tests/fixtures/store-v1, made by its make.py) reads exactly as it did then,
after `fetcher store migrate`; a store older than the code is refused with one
line naming that command, on SQLite and on PostgreSQL, until it is migrated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from fetcher.cli.main import cli
from fetcher.core.sources import resource_id
from fetcher.store import migrations, schema
from tests.conftest import write_config

V1 = Path(__file__).parent / "fixtures" / "store-v1"


def fetcher(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--config", str(config), *args])
    return result.exit_code, result.stdout + result.stderr


def readings(config: Path) -> dict[str, object]:
    """What each reading command prints, as the fixture's expected/ files name it
    (show and history parsed: their keys are compared, not their order)."""
    urls = json.loads((V1 / "urls.json").read_text())
    audit = json.loads(fetcher(config, "audit", "--format", "json")[1])
    del audit["generated_at"]
    out = {"audit.json": json.dumps(audit, indent=1), "export.json": fetcher(config, "export")[1],
           "runs.json": fetcher(config, "runs", "--json")[1]}
    for number, url in enumerate(urls):
        out[f"show-{number}.json"] = fetcher(config, "show", url, "--format", "json")[1]
        out[f"history-{number}.json"] = fetcher(config, "history", resource_id(url), "--json")[1]
    return {name: json.loads(text) if name.startswith(("show-", "history-", "export")) else text
            for name, text in out.items()}


# What schema 2 added to each fetch (rendering, issue 15): a v1 fetch has none.
ADDED_SINCE_V1 = {"render": None, "render_reason": None, "static_sha256": None}


def expected() -> dict[str, object]:
    """What v1's code printed, with the keys added since: a v1 fetch reads as null there."""
    return {path.name: _with_added(path.name, path.read_text(encoding="utf-8"))
            for path in (V1 / "expected").iterdir()}


def _with_added(name: str, text: str) -> object:
    if not name.startswith(("show-", "history-", "export")):
        return text
    value = json.loads(text)
    for item in value if isinstance(value, list) else [value]:
        for fetch in (item, item.get("content")):  # a fetch, and the fetch whose content a preview shows
            if isinstance(fetch, dict):
                fetch.update({key: ADDED_SINCE_V1[key] for key in ADDED_SINCE_V1 if key not in fetch})
    return value


@pytest.fixture
def v1_store(tmp_path) -> Path:
    """A copy of the fixture store, with its config."""
    shutil.copytree(V1 / "snapshots", tmp_path / "snapshots")
    shutil.copy(V1 / "config.toml", tmp_path / "config.toml")
    return tmp_path / "config.toml"


def test_a_v1_store_from_before_migrations_reads_the_same_after_store_migrate(v1_store):
    code, said = fetcher(v1_store, "store", "migrate")
    assert code == 0 and f"to {schema.SCHEMA_VERSION}" in said, said
    assert readings(v1_store) == expected()


@pytest.fixture
def a_next_version(monkeypatch):
    """The code one schema version ahead: a step adding a column to `fetches`."""
    step = schema.Step(schema.SCHEMA_VERSION + 1, "ALTER TABLE fetches ADD COLUMN probe_note TEXT")
    monkeypatch.setattr(migrations, "STEPS", (*schema.STEPS, step))
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", step.version)
    return step.version


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_store_older_than_the_code_is_refused_until_migrated(v1_store, request, backend, a_next_version):
    config = v1_store
    with pytest.MonkeyPatch.context() as undo:  # the store as this version's code leaves it
        undo.setattr(migrations, "STEPS", schema.STEPS)
        undo.setattr(migrations, "SCHEMA_VERSION", schema.SCHEMA_VERSION)
        assert fetcher(config, "store", "migrate")[0] == 0
        if backend == "postgresql":  # the same store, copied to PostgreSQL by this version's code
            url = request.getfixturevalue("pg_url")
            assert fetcher(config, "store", "copy", "--to", url)[0] == 0
            (config.parent / "pg").mkdir()
            config = write_config(config.parent / "pg", json.loads((V1 / "urls.json").read_text()), database=url,
                                  retries=0, concurrency=1)
    for args in (("show", json.loads((V1 / "urls.json").read_text())[0]), ("export",), ("refresh",), ("status",)):
        code, said = fetcher(config, *args)
        assert code == 2 and said.count("\n") == 1, (args, said)
        assert said.startswith("error: ") and "fetcher store migrate" in said and "Traceback" not in said
    code, said = fetcher(config, "store", "migrate")
    assert code == 0 and f"from schema {a_next_version - 1} to {a_next_version}" in said
    assert readings(config) == expected()
    assert "already at schema" in fetcher(config, "store", "migrate")[1]


def test_migrating_a_file_that_is_not_a_store_is_one_line_and_leaves_it_alone(tmp_path):
    config = write_config(tmp_path, ["https://example.org/a"])
    (tmp_path / "snapshots").mkdir()
    bogus = tmp_path / "snapshots" / "fetcher.sqlite3"
    bogus.write_bytes(b"somebody's notes, not a database " * 40)
    code, said = fetcher(config, "store", "migrate")
    assert code == 2 and said.count("\n") == 1 and said.startswith("error: ") and "Traceback" not in said
    assert bogus.read_bytes() == b"somebody's notes, not a database " * 40


def test_store_migrate_makes_a_new_store_at_the_current_version(tmp_path, database):
    config = write_config(tmp_path, ["https://example.org/a"], database=database)
    code, said = fetcher(config, "store", "migrate")
    assert code == 0 and f"created at schema {schema.SCHEMA_VERSION}" in said, said
    assert "already at schema" in fetcher(config, "store", "migrate")[1]
    code, said = fetcher(config, "export")
    assert code == 0 and json.loads(said) == []


def test_store_migrate_on_postgresql_also_makes_the_run_queue_tables(tmp_path, pg_url):
    """A worker's or a queued refresh's tables are there after `store migrate`,
    before any worker started; migrating again changes nothing."""
    import psycopg

    config = write_config(tmp_path, ["https://example.org/a"], database=pg_url)
    code, said = fetcher(config, "store", "migrate")
    assert code == 0 and "created at schema" in said, said
    tables = ("procrastinate_jobs", "fetcher_queue_runs", "fetcher_run_sources", "fetcher_workers",
              "fetcher_host_pace")
    with psycopg.connect(pg_url) as db:
        assert all(db.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0] for name in tables)
    code, said = fetcher(config, "store", "migrate")
    assert code == 0 and "already at schema" in said, said
    assert fetcher(config, "status")[0] == 0
