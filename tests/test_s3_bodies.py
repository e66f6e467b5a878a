"""Bodies in an S3-compatible bucket ([storage] bodies = "s3://…"), against
moto's server on loopback: every body is one object named by its hash, read
back by the commands; nothing goes into the database's bodies or to disk."""

from __future__ import annotations

import gzip
import hashlib
import json

import pytest
from click.testing import CliRunner

from fetcher.cli.main import cli
from tests.conftest import write_config
from tests.origin import html

PAGE = "<html><head><title>{0}</title></head><body><article><p>" + "Findings of report {0}, in words. " * 30
PAGE += "</p></article></body></html>"


@pytest.fixture
def s3(monkeypatch):
    """moto's S3 on 127.0.0.1, a bucket `kb-bodies`, and a boto3 client on it."""
    import boto3
    from moto.server import ThreadedMotoServer

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket="kb-bodies")
        yield endpoint, client
    finally:
        server.stop()


def test_bodies_go_to_the_bucket_and_are_read_back(tmp_path, origin, s3, database):
    endpoint, client = s3
    urls = [origin.route(f"/{n}", html(PAGE.format(n))) for n in range(3)]
    config = write_config(tmp_path, urls, retries=0, database=database)
    text = config.read_text().replace("[storage]\n", f'[storage]\nbodies = "s3://kb-bodies/site/"\ns3_endpoint = "{endpoint}"\n')
    config.write_text(text)
    runner = CliRunner()
    for refresh in (["refresh"], ["refresh", "--all"]):  # the second: unchanged, no new body
        if database:  # on PostgreSQL a refresh is queued: a worker fetches it, stopping when the queue is empty
            assert runner.invoke(cli, ["--config", str(config), *refresh, "--no-wait"]).exit_code == 0
            assert runner.invoke(cli, ["--config", str(config), "worker", "--once"]).exit_code == 0
        else:
            assert runner.invoke(cli, ["--config", str(config), *refresh]).exit_code == 0

    keys = sorted(entry["Key"] for entry in client.list_objects_v2(Bucket="kb-bodies")["Contents"])
    assert len(keys) == 3 and all(key.startswith("site/") and key.endswith(".gz") for key in keys)
    for key in keys:
        body = gzip.decompress(client.get_object(Bucket="kb-bodies", Key=key)["Body"].read())
        assert key == f"site/{hashlib.sha256(body).hexdigest()[:2]}/{hashlib.sha256(body).hexdigest()}.gz"
    assert not list((tmp_path / "snapshots" / "bodies").rglob("*.gz"))
    if database:
        import psycopg

        with psycopg.connect(database) as db:
            assert db.execute("SELECT COUNT(*) FROM bodies").fetchone()[0] == 0

    shown = runner.invoke(cli, ["--config", str(config), "show", urls[1], "--format", "json"])
    assert shown.exit_code == 0 and "Findings of report 1" in json.dumps(json.loads(shown.stdout))


def test_an_unreachable_bucket_stops_the_run_with_one_line(tmp_path, origin, s3):
    endpoint, _client = s3
    config = write_config(tmp_path, [origin.route("/a", html(PAGE.format("a")))], retries=0)
    config.write_text(config.read_text().replace(
        "[storage]\n", f'[storage]\nbodies = "s3://no-such-bucket"\ns3_endpoint = "{endpoint}"\n'))
    result = CliRunner().invoke(cli, ["--config", str(config), "refresh"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith("error: ") and "no-such-bucket" in result.output


def test_a_store_copied_to_postgresql_with_its_bodies_in_a_bucket_reads_the_same(tmp_path, origin, s3, pg_url):
    """`store copy --to postgresql://… --bodies s3://…`: the rows into the database,
    every body into the bucket (none into the database), and the copy shows the
    same texts as the original."""
    endpoint, client = s3
    urls = [origin.route(f"/{n}", html(PAGE.format(n))) for n in range(3)]
    for name in ("original", "moved"):
        (tmp_path / name).mkdir()
    original = write_config(tmp_path / "original", urls, retries=0)
    runner = CliRunner()
    assert runner.invoke(cli, ["--config", str(original), "refresh"]).exit_code == 0

    copy = ["--config", str(original), "store", "copy", "--to", pg_url, "--bodies", "s3://kb-bodies/moved/",
            "--s3-endpoint", endpoint]
    copied = runner.invoke(cli, copy)
    assert copied.exit_code == 0, copied.output
    assert "counts checked" in copied.output and "bodies 3 (3 written)" in copied.output
    again = runner.invoke(cli, copy)  # as after an interruption: nothing written twice
    assert again.exit_code == 0 and "bodies 3 (0 written)" in again.output

    keys = [entry["Key"] for entry in client.list_objects_v2(Bucket="kb-bodies", Prefix="moved/")["Contents"]]
    files = (tmp_path / "original" / "snapshots" / "bodies").rglob("*.gz")
    assert sorted(key.rsplit("/", 1)[1] for key in keys) == sorted(path.name for path in files)
    for key in keys:
        body = gzip.decompress(client.get_object(Bucket="kb-bodies", Key=key)["Body"].read())
        assert key.endswith(f"/{hashlib.sha256(body).hexdigest()}.gz")
    import psycopg

    with psycopg.connect(pg_url) as db:
        assert db.execute("SELECT COUNT(*) FROM bodies").fetchone()[0] == 0
    moved = write_config(tmp_path / "moved", urls, retries=0, database=pg_url)
    moved.write_text(moved.read_text().replace(
        "[storage]\n", f'[storage]\nbodies = "s3://kb-bodies/moved"\ns3_endpoint = "{endpoint}"\n'))
    for url in urls:
        shown = [runner.invoke(cli, ["--config", str(config), "show", url, "--format", "json"])
                 for config in (original, moved)]
        assert shown[0].exit_code == shown[1].exit_code == 0
        assert json.loads(shown[1].stdout) == json.loads(shown[0].stdout)
        assert "Findings of report" in shown[1].stdout


@pytest.mark.parametrize("options, complaint", [
    (["--bodies", "bucket/prefix"], "--bodies/--s3-endpoint: expected an S3 location"),
    (["--s3-endpoint", "http://127.0.0.1:9"], "--s3-endpoint: it goes with --bodies"),
])
def test_store_copy_refuses_a_bad_bucket_option_in_one_line(tmp_path, options, complaint):
    config = write_config(tmp_path, ["http://127.0.0.1:9/a"])
    result = CliRunner().invoke(cli, ["--config", str(config), "store", "copy", "--to", str(tmp_path / "b"), *options])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith("error: ") and complaint in result.output
    assert not (tmp_path / "b").exists()
