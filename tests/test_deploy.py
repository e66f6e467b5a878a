"""The deployment examples in deploy/ (README "Workers on many machines"):
what can be checked here without a cluster or a registry. Every fetcher command
line in them is one the real CLI accepts; the Kubernetes manifests parse, take
the database URL from the Secret and mount a config that fetcher loads; the
systemd units pass `systemd-analyze verify`. Building the image and running it
on Kubernetes are not tested here (no network, no cluster)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from fetcher.cli.main import cli
from fetcher.core.config import parse_config

DEPLOY = Path(__file__).parent.parent / "deploy"
BINARY = "/srv/fetcher/.venv/bin/fetcher"


def manifests() -> dict[str, dict[str, Any]]:
    return {path.name: yaml.safe_load(path.read_text(encoding="utf-8")) for path in (DEPLOY / "kubernetes").glob("*.yaml")}


def containers(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    spec = manifest["spec"]
    spec = spec.get("jobTemplate", {}).get("spec", spec)
    return list(spec["template"]["spec"]["containers"])


def entrypoint_and_cmd() -> tuple[list[str], list[str]]:
    text = (DEPLOY / "Containerfile").read_text(encoding="utf-8")
    entry = re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M)
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert entry and cmd
    return yaml.safe_load(entry.group(1)), yaml.safe_load(cmd.group(1))


def command_lines() -> list[list[str]]:
    """Every fetcher command line in deploy/, as argument lists after `fetcher`."""
    lines = []
    for unit in (DEPLOY / "systemd").glob("*.service"):
        for line in unit.read_text(encoding="utf-8").splitlines():
            if line.startswith("ExecStart="):
                words = shlex.split(line.removeprefix("ExecStart="))
                assert words[0] == BINARY, unit.name
                lines.append(words[1:])
    entry, cmd = entrypoint_and_cmd()
    assert entry[0] == "fetcher"
    lines.append(entry[1:] + cmd)
    for manifest in manifests().values():
        if manifest["kind"] in ("Deployment", "CronJob", "Job"):
            lines += [entry[1:] + container["args"] for container in containers(manifest)]
    return lines


def test_every_command_line_in_the_examples_is_one_fetcher_accepts():
    lines = command_lines()
    assert ["--log-format", "json", "worker"] in lines
    assert any(line[-2:] == ["refresh", "--no-wait"] for line in lines)
    for words in lines:
        result = CliRunner().invoke(cli, [*words, "--help"])
        assert result.exit_code == 0, (words, result.output)


def test_the_kubernetes_examples_take_the_database_from_the_secret_and_a_config_fetcher_loads():
    found = manifests()
    secret = found["secret.yaml"]
    assert secret["kind"] == "Secret"
    for name in ("worker-deployment.yaml", "enqueue-cronjob.yaml", "migrate-job.yaml"):
        for container in containers(found[name]):
            env = {item["name"]: item for item in container["env"]}
            reference = env["FETCHER_DATABASE"]["valueFrom"]["secretKeyRef"]
            assert reference["name"] == secret["metadata"]["name"] and reference["key"] in secret["stringData"]
    config = yaml.safe_load((DEPLOY / "kubernetes" / "configmap.yaml").read_text(encoding="utf-8"))
    import tomllib

    loaded = parse_config(tomllib.loads(config["data"]["config.toml"]), None)
    assert loaded.database is None or loaded.database.startswith("postgresql")  # from the Secret, not the file
    worker = found["worker-deployment.yaml"]["spec"]["template"]["spec"]
    assert worker["terminationGracePeriodSeconds"] > loaded.schedule.shutdown_grace


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_systemd_units_pass_systemd_analyze(tmp_path):
    for unit in (DEPLOY / "systemd").glob("fetcher-*"):
        name = unit.name.replace("@.", "@1.")
        # the fetcher binary is where the example installs it; here /bin/true stands in
        (tmp_path / name).write_text(unit.read_text(encoding="utf-8").replace(BINARY, "/bin/true"), encoding="utf-8")
    for unit in sorted(tmp_path.iterdir()):
        result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
        complaints = [line for line in (result.stdout + result.stderr).splitlines() if str(tmp_path) in line]
        assert result.returncode == 0 and complaints == [], (unit.name, result.stderr)
