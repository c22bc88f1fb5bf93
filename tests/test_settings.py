"""Settings: declared once, validated when given."""

import pytest

import gswoole
from gswoole import settings
from gswoole.errors import SettingError


def server():
    return gswoole.Server("127.0.0.1", 0)


def test_defaults_are_effective_settings():
    s = server()
    assert s.setting["max_wait_time"] == 3.0
    assert s.setting["buffer_output_size"] == 2 * 1024 * 1024
    assert s.setting["open_tcp_nodelay"] is True
    assert s.setting["worker_num"] >= 1


def test_set_accepts_dict_and_kwargs():
    s = server()
    s.set({"worker_num": 3})
    s.set(max_request=100, max_wait_time=1)
    assert s.setting["worker_num"] == 3
    assert s.setting["max_request"] == 100
    assert s.setting["max_wait_time"] == 1.0


def test_unknown_key_names_the_nearest():
    with pytest.raises(SettingError) as info:
        server().set(worker_nums=2)
    assert "unknown setting 'worker_nums'" in str(info.value)
    assert "'worker_num'" in str(info.value)


def test_unknown_key_without_near_match():
    with pytest.raises(SettingError, match="unknown setting 'zzz'$"):
        server().set(zzz=1)


@pytest.mark.parametrize("key, value, message", [
    ("worker_num", "2", "setting 'worker_num': expected an int"),
    ("worker_num", 0, "setting 'worker_num': must be >= 1"),
    ("worker_num", True, "setting 'worker_num': expected an int"),
    ("max_wait_time", -1, "setting 'max_wait_time': must be >= 0"),
    ("enable_reuse_port", 2, "setting 'enable_reuse_port': expected True or False"),
    ("package_length_type", "X", "setting 'package_length_type': must be one of"),
    ("log_level", "loud", "setting 'log_level': must be one of"),
    ("package_eof", b"", "setting 'package_eof': expected non-empty bytes"),
])
def test_bad_values_name_the_key(key, value, message):
    with pytest.raises(SettingError) as info:
        server().set({key: value})
    assert message in str(info.value)


def test_a_failed_set_changes_nothing():
    s = server()
    before = dict(s.setting)
    with pytest.raises(SettingError):
        s.set(worker_num=4, max_wait_time="soon")
    assert s.setting == before


def test_log_level_accepts_swoole_numbers():
    s = server()
    s.set(log_level=4)
    assert s.setting["log_level"] == "error"


def test_every_setting_documented():
    for setting in settings.SETTINGS:
        assert setting.doc
        if setting.default is not None:
            assert setting.validate(setting.default) == setting.default
    table = settings.table()
    assert all("`%s`" % s.name in table for s in settings.SETTINGS)


def test_second_server_on_the_same_port_fails_at_construction():
    first = gswoole.Server("127.0.0.1", 0)
    with pytest.raises(OSError, match="cannot bind"):
        gswoole.Server("127.0.0.1", first.port)


def test_each_setting_declares_where_it_applies_and_its_type():
    from gswoole import client, server
    for setting in settings.SETTINGS:
        assert set(setting.scopes) <= {"server", "port", "client"}, setting.name
        if setting.cli:
            assert setting.kind in (bool, int, float, str), setting.name
    # The port's and the client's settings come from those declarations.
    assert server.PORT_SETTINGS == settings.names_in("port")
    assert set(client.FRAMING_KEYS) == set(settings.names_in("client"))
    assert "package_eof" in settings.names_in("port") and "worker_num" not in server.PORT_SETTINGS


def test_gunicorn_config_spellings_are_declared_with_their_setting():
    from gswoole import cli
    assert cli._CONFIG_ALIASES["keepalive"] == "http_keepalive_timeout"
    assert cli._CONFIG_ALIASES["logconfig_dict"] == "log_config"
    assert cli._CONFIG_ALIASES["workers"] == "worker_num"
