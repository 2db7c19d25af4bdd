"""Cluster config validation: errors name the file and key."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from remote.config import load_cluster_config, parse_cluster_config
from remote.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def server(**overrides):
    base = {"name": "gpu-1", "host": "10.0.0.5", "root": "/srv/eb"}
    base.update(overrides)
    return base


def test_missing_file_gives_single_localhost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EPOCH_CLUSTER_CONFIG", raising=False)
    config = load_cluster_config(None, local_root=tmp_path)  # no <workspace>/config/cluster.json
    assert config.names() == ["localhost"]
    assert config.servers[0].local and config.servers[0].root == str(tmp_path.resolve())
    assert config.servers[0].python == sys.executable


def test_cluster_file_lookup_order_and_a_named_file_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--config, then $EPOCH_CLUSTER_CONFIG, then <workspace>/config/cluster.json; a file named by either of
    the first two that does not exist is an error (it used to drive localhost alone, silently)."""
    import json

    def one_server(name: str) -> dict:
        return {"servers": [{"name": name, "local": True, "root": str(tmp_path / name)}]}

    monkeypatch.delenv("EPOCH_CLUSTER_CONFIG", raising=False)
    workspace = tmp_path / "ws"
    (workspace / "config").mkdir(parents=True)
    (workspace / "config" / "cluster.json").write_text(json.dumps(one_server("from-workspace")))
    env_file = tmp_path / "env.json"
    env_file.write_text(json.dumps(one_server("from-env")))
    flag_file = tmp_path / "flag.json"
    flag_file.write_text(json.dumps(one_server("from-flag")))
    assert load_cluster_config(None, local_root=workspace).names() == ["from-workspace"]
    monkeypatch.setenv("EPOCH_CLUSTER_CONFIG", str(env_file))
    assert load_cluster_config(None, local_root=workspace).names() == ["from-env"]
    assert load_cluster_config(flag_file, local_root=workspace).names() == ["from-flag"]
    with pytest.raises(ConfigError, match=r"absent.json: cluster file not found \(given by --config\)"):
        load_cluster_config(tmp_path / "absent.json", local_root=workspace)
    monkeypatch.setenv("EPOCH_CLUSTER_CONFIG", str(tmp_path / "gone.json"))
    with pytest.raises(ConfigError, match=r"gone.json: cluster file not found \(given by \$EPOCH_CLUSTER_CONFIG\)"):
        load_cluster_config(None, local_root=workspace)


def test_example_file_is_valid() -> None:
    config = load_cluster_config(ROOT / "config" / "cluster.example.json")
    assert config.names() == ["localhost", "gpu-1", "cpu-2"]
    assert config.server("gpu-1").python == "/home/quant/.venvs/epoch-builder/bin/python"
    assert config.server("cpu-2").shutdown_command == ("sudo", "-n", "/sbin/poweroff")
    assert config.server("cpu-2").reboot_command == ("sudo", "-n", "/sbin/reboot")
    assert config.ssh.host_key_policy == "strict"
    assert config.server("cpu-2").cpus == (0, 1, 2, 3) and config.server("gpu-1").cpus is None


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"servers": []}, "servers: must be a non-empty list"),
        ({"servers": [server(port=70000)]}, "servers[0].port: 70000 out of range; allowed 1..65535"),
        ({"servers": [server(port="22")]}, "servers[0].port: must be an integer"),
        ({"servers": [server(), server()]}, "servers[1].name: duplicate server name 'gpu-1'"),
        ({"servers": [server(name="bad name")]}, "servers[0].name: 'bad name' not allowed"),
        ({"servers": [server(name="all")]}, "servers[0].name: 'all' not allowed"),
        ({"servers": [server(root="relative/dir")]}, "servers[0].root: 'relative/dir' must be an absolute path"),
        ({"servers": [server(colour="red")]}, "servers[0].colour: unknown key; allowed:"),
        ({"servers": [server(host="-oProxyCommand=x")]}, "servers[0].host: '-oProxyCommand=x' is not a host name"),
        ({"servers": [server(venv="/v", python="/p")]}, "servers[0].python: give either 'venv' or 'python'"),
        ({"servers": [server(reboot_command=[])]}, "servers[0].reboot_command: must be a command"),
        ({"servers": [server(cpus=[0, 0])]}, "servers[0].cpus: must be a non-empty list of distinct core numbers 0 to 4095"),
        ({"servers": [server(cpus=[-1])]}, "servers[0].cpus: must be a non-empty list of distinct core numbers"),
        ({"servers": [server(cpus="0-3")]}, "servers[0].cpus: must be a non-empty list of distinct core numbers"),
        ({"ssh": {"host_key_policy": "off"}, "servers": [server()]}, "ssh.host_key_policy: 'off' not allowed; allowed: strict, accept-new"),
        ({"ssh": {"max_channels": 0}, "servers": [server()]}, "ssh.max_channels: 0 out of range; allowed 1..64"),
        ({"servers": [{"host": "x", "root": "/r"}]}, "servers[0].name: is required"),
        ([], "(top level): must be a JSON object"),
    ],
)
def test_invalid_documents_name_the_key(doc, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_cluster_config(doc, "cluster.json")
    assert str(info.value).startswith("cluster.json: ")
    assert message in str(info.value)


def test_invalid_json_names_file_and_position(tmp_path: Path) -> None:
    path = tmp_path / "cluster.json"
    path.write_text('{"servers": [}')
    with pytest.raises(ConfigError, match=r"cluster.json: invalid JSON at line 1 column 14"):
        load_cluster_config(path)


def test_select_and_unknown_server(tmp_path: Path) -> None:
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps({"servers": [server(), server(name="gpu-2")]}))
    config = load_cluster_config(path)
    assert [s.name for s in config.select("all")] == ["gpu-1", "gpu-2"]
    assert [s.name for s in config.select("gpu-2")] == ["gpu-2"]
    with pytest.raises(ConfigError, match="unknown server 'gpu-3'; configured: gpu-1, gpu-2"):
        config.select("gpu-3")


def test_port_is_set_only_by_the_cluster_file() -> None:
    """No port in the file leaves it to ~/.ssh/config (asyncssh reads it), so it is not shown either."""
    config = parse_cluster_config({"servers": [server(user="quant"), server(name="gpu-2", port=None),
                                               server(name="gpu-3", port=2222)]})
    unset, null, given = config.servers
    assert (unset.port, null.port, given.port) == (None, None, 2222)
    assert (unset.address, given.address) == ("quant@10.0.0.5", "10.0.0.5:2222")


def test_ssh_options_pass_the_port_only_when_set() -> None:
    from remote.ssh_host import SSHHost

    config = parse_cluster_config({"servers": [server(), server(name="gpu-2", port=2222)]})
    assert "port" not in SSHHost(config.servers[0], config.ssh)._options()
    assert SSHHost(config.servers[1], config.ssh)._options()["port"] == 2222


def test_the_controllers_workspace_is_a_server_of_the_console(tmp_path: Path) -> None:
    """The console shows and acts on its own workspace: localhost without a cluster file, a local server
    rooted there, else a `controller` added first that dispatch leaves out."""
    from remote.config import CONTROLLER_NAME, load_cluster_config, parse_cluster_config, with_controller

    workspace = tmp_path / "ws"
    workspace.mkdir()
    alone, name = with_controller(load_cluster_config(None, local_root=workspace), workspace)
    assert name == "localhost" and alone.names() == ["localhost"]

    remote = {"servers": [{"name": "w0", "host": "h0", "root": "/srv/a"}, {"name": "w1", "host": "h1", "root": "/srv/b"}]}
    added, name = with_controller(parse_cluster_config(remote), workspace)
    assert name == CONTROLLER_NAME and added.names() == ["controller", "w0", "w1"]
    controller = added.server("controller")
    assert controller.local and not controller.is_cluster and controller.root == str(workspace.resolve())

    here = {"servers": [*remote["servers"], {"name": "me", "local": True, "root": str(workspace)}]}
    same, name = with_controller(parse_cluster_config(here), workspace)
    assert name == "me" and same.names() == ["w0", "w1", "me"]

    clash = {"servers": [{"name": "controller", "host": "h2", "root": "/srv/c"}]}
    with pytest.raises(ConfigError, match="the name 'controller' is kept for this machine's workspace"):
        with_controller(parse_cluster_config(clash, "cluster.json"), workspace)
