"""zinit service files, names, signals, zinit state strings and supervisord program rendering."""

from __future__ import annotations

import configparser
import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zos_upgrade.errors import ConfigError
from zos_upgrade.supervisor import (
    InvalidServiceName,
    ServiceConfig,
    StateFamily,
    SupervisorError,
    normalize_signal,
    parse_service_config,
    render_service_config,
    validate_service_name,
)
from zos_upgrade.supervisor.supervisord import render_program
from zos_upgrade.supervisor.zinit import parse_zinit_state

FULL = """\
exec: /bin/redis-server --port 7777
test: redis-cli -p 7777 ping
oneshot: false
after:
  - network
  - storaged
signal:
  stop: sigint
log: stdout
env:
  HOME: /root
  MODE: "1"
dir: /var/lib/redis
"""


def test_every_key_is_read() -> None:
    cfg = parse_service_config(FULL, source="redis.yaml")
    assert cfg == ServiceConfig(
        exec="/bin/redis-server --port 7777", test="redis-cli -p 7777 ping", oneshot=False,
        after=("network", "storaged"), signal_stop="sigint", log="stdout",
        env={"HOME": "/root", "MODE": "1"}, dir="/var/lib/redis",
    )


def test_minimal_file_gets_zinit_defaults() -> None:
    cfg = parse_service_config(b"exec: sleep 1\n", source="s.yaml")
    assert (cfg.test, cfg.oneshot, cfg.after, cfg.signal_stop, cfg.log, dict(cfg.env), cfg.dir) == (
        "", False, (), "sigterm", "ring", {}, "")


@pytest.mark.parametrize(("text", "key"), [
    ("exec: a\nrestart: always\n", "restart"),  # unknown key
    ("exec: 5\n", "exec"),
    ("exec: ''\n", "exec"),
    ("test: x\n", "exec"),  # exec missing
    ("exec: a\noneshot: 'yes'\n", "oneshot"),
    ("exec: a\nafter: network\n", "after"),  # a string, not a list
    ("exec: a\nafter: [good, 'bad name']\n", "after"),
    ("exec: a\nsignal: sigint\n", "signal"),
    ("exec: a\nsignal: {stop: nope}\n", "signal.stop"),
    ("exec: a\nsignal: {stop: sigint, reload: sighup}\n", "signal"),
    ("exec: a\nlog: syslog\n", "log"),
    ("exec: a\nenv: [A=b]\n", "env"),
    ("exec: a\nenv: {PORT: 80}\n", "env"),
    ("exec: a\ndir: [x]\n", "dir"),
])
def test_bad_files_name_the_file_and_the_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_service_config(text, source="etc/zinit/bad.yaml")
    assert "etc/zinit/bad.yaml" in str(info.value) and key in str(info.value)


@pytest.mark.parametrize("text", ["- exec: a\n", "just text\n", "exec: [unclosed\n", ""])
def test_not_a_mapping_or_not_yaml(text: str) -> None:
    with pytest.raises(ConfigError, match=r"x\.yaml"):
        parse_service_config(text, source="x.yaml")


_names = st.from_regex(r"[A-Za-z0-9_@+-][A-Za-z0-9_.@+-]{0,20}", fullmatch=True)
_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)


@given(
    exec_=_text.filter(str.strip), test=_text, oneshot=st.booleans(),
    after=st.lists(_names, max_size=3).map(tuple), sig=st.sampled_from(["sigterm", "SIGINT", "sighup"]),
    log=st.sampled_from(["ring", "stdout", "null"]),
    env=st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True), _text, max_size=3),
    dir_=_text,
)
def test_render_then_parse_is_identity(exec_: str, test: str, oneshot: bool, after: tuple[str, ...],
                                       sig: str, log: str, env: dict[str, str], dir_: str) -> None:
    cfg = ServiceConfig(exec=exec_, test=test, oneshot=oneshot, after=after, signal_stop=sig, log=log,
                        env=env, dir=dir_)
    assert parse_service_config(render_service_config(cfg), source="r.yaml") == cfg


@pytest.mark.parametrize("name", ["", " ", "a b", "a/b", "/", "..", ".", "a\0", "a\n", "a\x7f", "é", "a:b",
                                  "x" * 201])
def test_refused_names(name: str) -> None:
    with pytest.raises(InvalidServiceName):
        validate_service_name(name)
    assert issubclass(InvalidServiceName, SupervisorError) and issubclass(InvalidServiceName, ConfigError)


@pytest.mark.parametrize("name", ["redis", "node-ready", "a.b", "x@1", "g+", "x" * 200])
def test_accepted_names(name: str) -> None:
    assert validate_service_name(name) == name


@pytest.mark.parametrize(("given_", "expected"), [
    ("kill", "SIGKILL"), ("SIGTERM", "SIGTERM"), ("sigint", "SIGINT"), ("9", "SIGKILL"), (" hup ", "SIGHUP"),
])
def test_signals(given_: str, expected: str) -> None:
    assert normalize_signal(given_) == expected


@pytest.mark.parametrize("bad", ["SIGNOPE", "", "999", "SIG_IGN", "kill -9"])
def test_bad_signals(bad: str) -> None:
    with pytest.raises(ValueError):
        normalize_signal(bad)


@pytest.mark.parametrize(("raw", "family", "detail"), [
    ("Running", StateFamily.RUNNING, ""),
    ("Spawned", StateFamily.STARTING, ""),
    ("Unknown", StateFamily.UNKNOWN, ""),
    ("Blocked", StateFamily.EXITED, ""),
    ("Success", StateFamily.EXITED, ""),
    ("Failure", StateFamily.EXITED, ""),
    ("TestFailure", StateFamily.UNKNOWN, "test command failed"),
    ("Error(Exited(Pid(123), 1))", StateFamily.EXITED, "exited with status 1 (pid 123)"),
    ("Error(Signaled(Pid(77), SIGKILL, false))", StateFamily.EXITED, "killed by SIGKILL (pid 77)"),
    ("Error(Signaled(Pid(77), SIGSEGV, true))", StateFamily.EXITED, "killed by SIGSEGV (pid 77)"),
    ("Error(Something new)", StateFamily.EXITED, "Something new"),
    ("Sleeping", StateFamily.UNKNOWN, "unrecognised zinit state 'Sleeping'"),
])
def test_zinit_states(raw: str, family: StateFamily, detail: str) -> None:
    assert parse_zinit_state(raw) == (family, detail)


def test_supervisord_program_translation() -> None:
    cfg = ServiceConfig(exec="/bin/app --rate 50% --name 'a b'", oneshot=True, signal_stop="sigint",
                        env={"GREETING": 'say "hi" 100%', "PATH": "/bin"}, dir="/srv", log="null")
    text = render_program("app", cfg)
    parser = configparser.ConfigParser()  # supervisord reads it with %-interpolation
    parser.read_string(text)
    sec = parser["program:app"]
    assert shlex.split(sec["command"]) == ["/bin/app", "--rate", "50%", "--name", "a b"]
    assert sec["autorestart"] == "false" and sec["startsecs"] == "0" and sec["stopsignal"] == "INT"
    assert sec["directory"] == "/srv" and sec["stdout_logfile"] == "NONE"
    assert sec["environment"] == 'GREETING="say \\"hi\\" 100%",PATH="/bin"'


def test_supervisord_program_refuses_control_characters() -> None:
    with pytest.raises(SupervisorError, match="control characters"):
        render_program("app", ServiceConfig(exec="a\nb"))
