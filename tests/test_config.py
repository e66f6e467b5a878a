"""config.toml: the shipped file parses, defaults are the documented ones, paths
resolve beside the config, and every mistake is one line naming the key."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from fetcher.cli.main import cli
from fetcher.core.config import ConfigError, FetchSettings, config_path, load_config
from fetcher.core.sources import find_duplicates, make_source, resource_id
from tests.conftest import run_fetcher, toml_value

SHIPPED = Path(__file__).resolve().parent.parent / "config.toml"
NTIA = "https://www.ntia.gov/sites/default/files/publications/ntia-ai-open-model-report.pdf"


def write(directory: Path, text: str, name: str = "config.toml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message, message
    assert str(path) in message, message  # says which file
    return message


# -- the shipped config ------------------------------------------------------


@pytest.fixture
def shipped():
    if not SHIPPED.is_file():
        pytest.skip("no config.toml shipped yet")
    return load_config(SHIPPED)


def test_shipped_config_parses_with_valid_distinct_sources(shipped):
    assert shipped.sources, "the shipped config lists no sources"
    assert shipped.storage_dir == SHIPPED.parent / "snapshots"
    for source in shipped.sources:
        assert source.url.startswith(("http://", "https://"))
        assert source.resource_id == hashlib.sha256(source.url.encode()).hexdigest()[:16]
        assert source.title is None or source.title.strip()
        assert all(isinstance(tag, str) and tag for tag in source.tags)
    ids = [s.resource_id for s in shipped.sources]
    assert len(set(ids)) == len(ids)
    assert find_duplicates(shipped.sources) == []


def test_shipped_config_spells_out_the_defaults(shipped, tmp_path):
    defaults = load_config(write(tmp_path, ""))
    assert shipped.fetch == defaults.fetch
    assert shipped.preview_chars == defaults.preview_chars
    assert shipped.archive == defaults.archive
    assert shipped.archives == defaults.archives


# -- defaults and paths ------------------------------------------------------


def test_an_empty_config_gets_the_documented_defaults(tmp_path):
    config = load_config(write(tmp_path, ""))
    assert config.sources == ()
    assert config.storage_dir == tmp_path / "snapshots"
    assert config.preview_chars == 3000
    fetch = config.fetch
    assert fetch == FetchSettings()
    assert fetch.user_agent.startswith("fetcher/")
    assert (fetch.connect_timeout, fetch.read_timeout, fetch.deadline) == (10, 30, 60)
    assert fetch.max_bytes == 25 * 1024 * 1024
    assert (fetch.concurrency, fetch.per_host_concurrency, fetch.per_host_delay) == (16, 2, 1.0)
    assert (fetch.retries, fetch.max_retry_after) == (2, 120)


def test_values_are_read_and_numbers_accept_integers(tmp_path):
    config = load_config(
        write(
            tmp_path,
            '[fetch]\nuser_agent = "kb-bot/2"\nconnect_timeout = 3\nper_host_delay = 0.25\nretries = 0\n'
            "max_bytes = 1000\n\n[preview]\nchars = 500\n\n"
            '[[sources]]\nurl = "https://example.org/a"\ntitle = "A"\ntags = ["x", "y"]\n',
        )
    )
    assert config.fetch.user_agent == "kb-bot/2"
    assert config.fetch.connect_timeout == 3.0 and isinstance(config.fetch.connect_timeout, float)
    assert (config.fetch.per_host_delay, config.fetch.retries, config.fetch.max_bytes) == (0.25, 0, 1000)
    assert config.preview_chars == 500
    (source,) = config.sources
    assert (source.url, source.title, source.tags) == ("https://example.org/a", "A", ("x", "y"))
    assert config.source_by_id(resource_id("https://example.org/a")) == source
    assert config.source_by_id(resource_id("https://example.org/b")) is None


def test_relative_storage_dir_is_resolved_against_the_config_folder(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = write(tmp_path / "kb", '[storage]\ndir = "data/snaps"\n')
    assert load_config(path).storage_dir == tmp_path / "kb" / "data" / "snaps"

    absolute = tmp_path / "absolute-store"
    path = write(tmp_path / "kb2", f'[storage]\ndir = "{absolute.as_posix()}"\n')
    assert load_config(path).storage_dir == absolute


def test_store_is_created_beside_the_config_not_in_the_working_directory(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = write(tmp_path / "kb", '[storage]\ndir = "data"\n')
    result = CliRunner().invoke(cli, ["--config", str(path), "refresh"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "kb" / "data").is_dir()
    assert list(elsewhere.iterdir()) == []


# -- which config file -------------------------------------------------------


def test_config_path_order_is_option_then_env_then_cwd(monkeypatch):
    monkeypatch.delenv("FETCHER_CONFIG", raising=False)
    assert config_path(None) == Path("config.toml")
    monkeypatch.setenv("FETCHER_CONFIG", "/srv/kb/env.toml")
    assert config_path(None) == Path("/srv/kb/env.toml")
    assert config_path("/srv/kb/option.toml") == Path("/srv/kb/option.toml")


def test_fetcher_config_env_is_honoured_and_config_option_overrides_it(tmp_path, monkeypatch):
    monkeypatch.delenv("FETCHER_CONFIG", raising=False)
    env_config = write(tmp_path, '[storage]\ndir = "store-env"\n', "env.toml")
    option_config = write(tmp_path, '[storage]\ndir = "store-option"\n', "option.toml")
    cwd_config = write(tmp_path / "cwd", '[storage]\ndir = "store-cwd"\n')
    monkeypatch.chdir(cwd_config.parent)
    runner = CliRunner()

    assert runner.invoke(cli, ["refresh"], env={"FETCHER_CONFIG": str(env_config)}).exit_code == 0
    assert (tmp_path / "store-env").is_dir()
    assert not (tmp_path / "store-option").exists() and not (tmp_path / "cwd" / "store-cwd").exists()

    result = runner.invoke(cli, ["--config", str(option_config), "refresh"], env={"FETCHER_CONFIG": str(env_config)})
    assert result.exit_code == 0
    assert (tmp_path / "store-option").is_dir()
    assert not (tmp_path / "cwd" / "store-cwd").exists()

    assert runner.invoke(cli, ["refresh"]).exit_code == 0  # neither: ./config.toml
    assert (tmp_path / "cwd" / "store-cwd").is_dir()


def test_env_pointing_at_a_bad_config_is_reported_by_name(tmp_path):
    bad = write(tmp_path, "[fetch]\nretries = -1\n", "env.toml")
    result = CliRunner().invoke(cli, ["export"], env={"FETCHER_CONFIG": str(bad)})
    assert result.exit_code == 2
    assert result.stderr.startswith("error:") and str(bad) in result.stderr and "retries" in result.stderr


# -- mistakes ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "names"),
    [
        pytest.param("[storage]\ndir = 's'\n[fetchh]\nretries = 1\n", ["fetchh"], id="unknown-table"),
        pytest.param('[fetch]\ntimeout = 5\n', ["[fetch]", "timeout"], id="unknown-fetch-key"),
        pytest.param('[preview]\nlength = 5\n', ["[preview]", "length"], id="unknown-preview-key"),
        pytest.param('[fetch]\nconnect_timeout = "10"\n', ["connect_timeout", "'10'"], id="string-for-number"),
        pytest.param('[fetch]\nmax_bytes = "25MB"\n', ["max_bytes", "25MB"], id="string-for-int"),
        pytest.param("[fetch]\nretries = true\n", ["retries", "True"], id="bool-for-int"),
        pytest.param("[fetch]\nper_host_delay = false\n", ["per_host_delay"], id="bool-for-float"),
        pytest.param("[preview]\nchars = true\n", ["[preview]", "chars"], id="bool-for-preview-chars"),
        pytest.param("[fetch]\nconcurrency = 1.5\n", ["concurrency", "1.5"], id="float-for-int"),
        pytest.param("[fetch]\nconcurrency = 0\n", ["concurrency", "0"], id="zero-concurrency"),
        pytest.param("[fetch]\nconcurrency = -4\n", ["concurrency", "-4"], id="negative-concurrency"),
        pytest.param("[fetch]\nper_host_concurrency = 0\n", ["per_host_concurrency"], id="zero-per-host"),
        pytest.param("[fetch]\nretries = -1\n", ["retries", "-1"], id="negative-retries"),
        pytest.param("[fetch]\ndeadline = 0\n", ["deadline"], id="zero-deadline"),
        pytest.param("[preview]\nchars = 0\n", ["chars"], id="zero-preview-chars"),
        pytest.param('[storage]\ndir = ""\n', ["[storage]", "dir"], id="empty-storage-dir"),
        pytest.param('[fetch]\nuser_agent = ""\n', ["user_agent"], id="empty-user-agent"),
        pytest.param('fetch = "fast"\n', ["fetch", "table"], id="fetch-not-a-table"),
        pytest.param('[sources]\nurl = "https://example.org/"\n', ["sources", "[[sources]]"], id="sources-as-table"),
    ],
)
def test_bad_settings_name_the_key(tmp_path, text, names):
    message = config_error(tmp_path, text)
    for name in names:
        assert name in message, message


SOURCE_OK = '[[sources]]\nurl = "https://example.org/report"\n\n'


@pytest.mark.parametrize(
    ("entry", "names"),
    [
        pytest.param('[[sources]]\ntitle = "No URL here"\n', ["#2", "url"], id="no-url"),
        pytest.param('[[sources]]\nurl = "ftp://files.example.org/report.pdf"\n', ["#2", "url", "ftp://"], id="ftp"),
        pytest.param('[[sources]]\nurl = "https://example.org/a report.pdf"\n', ["#2", "url", "white space"], id="space"),
        pytest.param('[[sources]]\nurl = " https://example.org/a"\n', ["#2", "url"], id="leading-space"),
        pytest.param('[[sources]]\nurl = "https://example.org/a\\u00a0b"\n', ["#2", "white space"], id="no-break-space"),
        pytest.param('[[sources]]\nurl = "https://example.org/a\\u3000"\n', ["#2", "white space"], id="ideographic-space"),
        pytest.param('[[sources]]\nurl = "https://example.org/a\\tb"\n', ["#2", "white space"], id="tab"),
        pytest.param('[[sources]]\nurl = "https://example.org/a\\u007fb"\n', ["#2", "control character"], id="delete"),
        pytest.param('[[sources]]\nurl = "https://example.org/a\\u0001b"\n', ["#2", "control character"], id="control"),
        pytest.param('[[sources]]\nurl = "example.org/report"\n', ["#2", "url"], id="no-scheme"),
        pytest.param('[[sources]]\nurl = "https:///report"\n', ["#2", "url", "host"], id="no-host"),
        pytest.param('[[sources]]\nurl = "https://example.org:99999/"\n', ["#2", "url"], id="bad-port"),
        pytest.param('[[sources]]\nurl = ""\n', ["#2", "url"], id="empty-url"),
        pytest.param("[[sources]]\nurl = 42\n", ["#2", "url", "42"], id="url-not-string"),
        pytest.param('[[sources]]\nurl = "https://example.org/b"\ntags = "pdf"\n', ["#2", "tags", "'pdf'"], id="tags-string"),
        pytest.param('[[sources]]\nurl = "https://example.org/b"\ntags = ["pdf", 3]\n', ["#2", "tags"], id="tags-mixed"),
        pytest.param('[[sources]]\nurl = "https://example.org/b"\ntitle = 7\n', ["#2", "title"], id="title-not-string"),
        pytest.param('[[sources]]\nurl = "https://example.org/b"\nnote = "x"\n', ["#2", "note"], id="unknown-key"),
    ],
)
def test_bad_second_source_names_the_source_and_key(tmp_path, entry, names):
    message = config_error(tmp_path, SOURCE_OK + entry)
    for name in names:
        assert name in message, message
    assert "#1" not in message


def test_invalid_toml_names_the_file_and_line(tmp_path):
    message = config_error(tmp_path, '[fetch]\nretries = 2\nuser_agent = "unterminated\n')
    assert "TOML" in message and "line 3" in message, message


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "config.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value) and "not found" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        pytest.param('[storage]\ndir = "snapshots"\n[fetch]\nconcurency = 4\n', ["concurency"], id="typo-key"),
        pytest.param(SOURCE_OK + '[[sources]]\nurl = "ftp://example.org/x"\n', ["#2", "url"], id="ftp-source"),
        pytest.param('[storage]\ndir = "snapshots"\n[fetch\n', ["TOML"], id="bad-toml"),
        pytest.param(None, ["not found"], id="missing-file"),
    ],
)
def test_refresh_with_a_bad_config_exits_2_with_one_line_and_writes_nothing(tmp_path, text, names):
    config = tmp_path / "bad.toml"
    if text is not None:
        config.write_text(text, encoding="utf-8")
    done = run_fetcher(tmp_path, "--config", str(config), "refresh")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr
    assert str(config) in lines[0]
    for name in names:
        assert name in lines[0], lines[0]
    assert done.stdout == ""
    assert not (tmp_path / "snapshots").exists()


def test_unknown_key_with_a_newline_is_still_one_line(tmp_path):
    config_error(tmp_path, '[fetch]\n"retries\\nextra" = 1\n')


# -- resource ids and duplicates -----------------------------------------------


def test_resource_id_matches_the_knowledge_base():
    assert resource_id(NTIA) == "a6ec2c2fe408fea3"
    assert make_source(NTIA).resource_id == "a6ec2c2fe408fea3"


@pytest.mark.parametrize(
    "url",
    [NTIA, "https://arxiv.org/abs/2405.08597", "http://127.0.0.1:8080/a?b=c#d", "https://例え.jp/パス"],
)
def test_resource_id_is_sha256_of_the_url_as_written(url):
    expected = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    assert resource_id(url) == expected
    assert len(expected) == 16


def test_resource_id_is_not_normalised():
    variants = [NTIA, NTIA + "/", NTIA.replace("www.", ""), NTIA.replace("https:", "http:"), NTIA + "#page=2"]
    assert len({resource_id(url) for url in variants}) == len(variants)


@pytest.mark.parametrize(
    ("first", "later"),
    [
        pytest.param("https://www.example.org/report", "https://example.org/report", id="www"),
        pytest.param("https://example.org/report/", "https://example.org/report", id="trailing-slash"),
        pytest.param("https://example.org/report", "https://example.org/report#section-2", id="fragment"),
        pytest.param("http://example.org/report", "https://example.org/report", id="scheme"),
        pytest.param("https://example.org", "https://example.org/", id="root"),
        pytest.param("https://Example.ORG/report", "https://example.org/report", id="host-case"),
        pytest.param("https://example.org:443/report", "http://example.org/report", id="default-port"),
        pytest.param("http://www.example.org/a/?q=1#top", "https://example.org/a?q=1", id="all-at-once"),
    ],
)
def test_duplicates_are_found(first, later):
    sources = [make_source(first), make_source("https://other.example.org/x"), make_source(later)]
    pairs = find_duplicates(sources)
    assert [(a.url, b.url) for a, b in pairs] == [(first, later)]


@pytest.mark.parametrize(
    ("one", "two"),
    [
        pytest.param("https://example.org/report", "https://example.org/reports", id="path"),
        pytest.param("https://example.org/a/report", "https://example.org/b/report", id="folder"),
        pytest.param("https://example.org/report?id=1", "https://example.org/report?id=2", id="query"),
        pytest.param("https://example.org/report", "https://example.org/report?id=1", id="query-added"),
        pytest.param("https://example.org/report", "https://example.net/report", id="host"),
        pytest.param("https://example.org/report", "https://example.org:8443/report", id="port"),
        pytest.param("https://arxiv.org/abs/2405.08597", "https://arxiv.org/pdf/2405.08597", id="abs-vs-pdf"),
    ],
)
def test_different_resources_are_not_duplicates(one, two):
    assert find_duplicates([make_source(one), make_source(two)]) == []


def test_duplicates_in_a_config_are_reported_in_order(tmp_path):
    urls = [
        "https://example.org/a",
        "https://example.org/b",
        "https://www.example.org/a/",
        "http://example.org/a#x",
    ]
    config = load_config(write(tmp_path, "".join(f'[[sources]]\nurl = "{u}"\n' for u in urls)))
    assert [(a.url, b.url) for a, b in find_duplicates(config.sources)] == [(urls[0], urls[2]), (urls[0], urls[3])]


# -- archives -----------------------------------------------------------------


def test_archive_defaults_point_at_the_wayback_machine(tmp_path):
    config = load_config(write(tmp_path, ""))
    (archive,) = config.archives
    assert archive.cdx_url == "https://web.archive.org/cdx/search/cdx"
    assert archive.replay_url == "https://web.archive.org/web"
    assert archive.requests_per_minute < 24  # below the Internet Archive's published limit
    assert config.archive.enabled and config.archive.fallback_on_blocked and not config.archive.save


def test_more_archives_are_tried_in_order(tmp_path):
    text = (
        '[archive]\nreplay_url = "https://archive.example/web/"\n'
        '[[archive.more]]\nname = "Local pywb"\ncdx_url = "http://127.0.0.1:8080/c/cdx"\n'
        'replay_url = "http://127.0.0.1:8080/c"\n'
    )
    config = load_config(write(tmp_path, text))
    assert [a.name for a in config.archives] == ["Wayback Machine", "Local pywb"]
    assert config.archives[0].replay_url == "https://archive.example/web"  # trailing slash dropped


@pytest.mark.parametrize(
    "text, named",
    [
        ('[archive]\nenabled = "yes"\n', "enabled"),
        ('[archive]\ncdx_url = "ftp://x.org/cdx"\n', "cdx_url"),
        ('[archive]\nrequests_per_minute = 0\n', "requests_per_minute"),
        ('[archive]\nsnapshots = 3\n', "snapshots"),
        ('[[archive.more]]\nname = "x"\n', "[[archive.more]] #1 has no cdx_url"),
        ('[[archive.more]]\ncdx_url = "http://a/cdx"\nreplay_url = "http://a"\nkind = "ia"\n', "kind"),
        ('[[archive.more]]\nname = "Wayback Machine"\ncdx_url = "http://a/cdx"\nreplay_url = "http://a"\n', "names"),
    ],
)
def test_bad_archive_settings_name_the_key(tmp_path, text, named):
    with pytest.raises(ConfigError, match=re.escape(named)):
        load_config(write(tmp_path, text))


# -- every setting declared once ---------------------------------------------


SECTIONS = {  # table -> the settings it holds (as a loaded config has them)
    "fetch": lambda config: [config.fetch],
    "archive": lambda config: [config.archive, config.archives[0]],
    "refresh": lambda config: [config.refresh],
    "schedule": lambda config: [config.schedule],
    "log": lambda config: [config.log],
}


def test_a_config_spelling_out_every_default_loads_like_an_empty_one(tmp_path):
    """Every setting a settings class declares is a key its table accepts, and its
    default passes its own check: written out, the defaults change nothing."""
    empty = load_config(write(tmp_path / "empty", ""))
    lines = []
    for table, settings_of in SECTIONS.items():
        lines.append(f"[{table}]")
        values = {name: value for settings in settings_of(empty) for name, value in vars(settings).items()}
        for name, value in values.items():
            if value is not None:  # None: "not set" (e.g. source_deadline), which TOML cannot spell
                lines.append(f"{name} = {toml_value(list(value) if isinstance(value, tuple) else value)}")
    spelled = load_config(write(tmp_path / "spelled", "\n".join(lines) + "\n"))
    for settings_of in SECTIONS.values():
        assert settings_of(spelled) == settings_of(empty)


def test_a_setting_the_classes_do_not_declare_is_refused(tmp_path):
    for table in SECTIONS:
        message = config_error(tmp_path, f"[{table}]\nno_such_setting = 1\n")
        assert f"[{table}] unknown key 'no_such_setting'" in message, message


# -- where the store is: [storage] database, $FETCHER_DATABASE ---------------


def test_the_database_is_sqlite_unless_configured_and_the_environment_overrides_it(tmp_path, monkeypatch):
    monkeypatch.delenv("FETCHER_DATABASE", raising=False)
    assert load_config(write(tmp_path, "")).database is None
    path = write(tmp_path, '[storage]\ndatabase = "postgresql://kb:s3cret@db.example/kb"\n')
    config = load_config(path)
    assert config.database == "postgresql://kb:s3cret@db.example/kb"
    assert config.database_display == "postgresql://kb:***@db.example/kb"
    monkeypatch.setenv("FETCHER_DATABASE", "postgresql:///other?password=hunter2&sslmode=require")
    config = load_config(path)
    assert config.database == "postgresql:///other?password=hunter2&sslmode=require"
    assert "hunter2" not in config.database_display
    monkeypatch.setenv("FETCHER_DATABASE", "")  # set but empty: SQLite
    assert load_config(path).database is None


def test_a_bad_database_url_is_one_line_without_its_password(tmp_path, monkeypatch):
    monkeypatch.delenv("FETCHER_DATABASE", raising=False)
    message = config_error(tmp_path, '[storage]\ndatabase = "mysql://kb:s3cret@db/kb"\n')
    assert "[storage] database" in message and "postgresql://" in message and "s3cret" not in message
    message = config_error(tmp_path, '[storage]\nbodies = "bucket/prefix"\n')
    assert "[storage] bodies" in message and "s3://" in message
