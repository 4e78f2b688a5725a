"""Configuration: the shipped example file, overrides, and usage errors that name the key."""

from __future__ import annotations

import os

from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from artifactd.config import Config, build_config, parse_toml, read_config_file
from artifactd.tap import Options

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ConfigTests(SynchronousTestCase):
    def test_example_file_documents_the_defaults(self) -> None:
        """etc/artifactd.toml parses and every value in it equals the embedded default."""
        values = read_config_file(os.path.join(ROOT, "etc", "artifactd.toml"))
        self.assertEqual(build_config(values, {}, {}), Config())

    def test_example_file_mentions_every_key(self) -> None:
        """Every configurable key appears (possibly commented out) in etc/artifactd.toml."""
        with open(os.path.join(ROOT, "etc", "artifactd.toml"), encoding="utf-8") as f:
            text = f.read()
        for name in Config.__attrs_attrs__:
            key = name.name
            self.assertIn(f"{key} =", text, key)

    def test_unknown_key_is_named(self) -> None:
        """An unknown key is a usage error that names table and key."""
        with self.assertRaises(UsageError) as e:
            parse_toml("[storage]\ndata_dri = 'x'\n", "f.toml")
        self.assertIn("storage.data_dri", str(e.exception))

    def test_wrong_type_is_named(self) -> None:
        """A value of the wrong type is a usage error naming the key."""
        with self.assertRaises(UsageError) as e:
            parse_toml("[storage]\nmax_object_size = 'big'\n", "f.toml")
        self.assertIn("storage.max_object_size", str(e.exception))

    def test_invalid_toml(self) -> None:
        """Broken TOML is a usage error naming the file."""
        with self.assertRaises(UsageError) as e:
            parse_toml("[server\n", "f.toml")
        self.assertIn("f.toml", str(e.exception))

    def test_precedence(self) -> None:
        """Command line beats environment beats file beats defaults."""
        file_values = parse_toml(
            "[storage]\ndata_dir = '/file'\n[auth]\nroot_access_key = 'FILEKEY'\n"
            "root_secret_key = 'filesecret'\n",
            "f",
        )
        env = {"ARTIFACTD_ROOT_ACCESS_KEY": "ENVKEY", "ARTIFACTD_ROOT_SECRET_KEY": "envsecret1"}
        config = build_config(file_values, {"data_dir": "/cli", "listen": None}, env)
        self.assertEqual(config.data_dir, "/cli")
        self.assertEqual(config.root_access_key, "ENVKEY")
        self.assertEqual(config.root_secret_key, "envsecret1")
        self.assertEqual(config.listen, Config().listen)

    def test_half_credentials_rejected(self) -> None:
        """Setting only one half of the root key pair is a usage error."""
        with self.assertRaises(UsageError) as e:
            build_config({"root_access_key": "AK"}, {}, {})
        self.assertIn("root_secret_key", str(e.exception))

    def test_secret_not_in_repr(self) -> None:
        """The root secret never appears in the config's repr."""
        config = build_config(
            {}, {}, {"ARTIFACTD_ROOT_ACCESS_KEY": "AK", "ARTIFACTD_ROOT_SECRET_KEY": "s3cr3tvalue"}
        )
        self.assertNotIn("s3cr3tvalue", repr(config))


class OptionsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """With no arguments the daemon serves 127.0.0.1:9000 from ./artifactd-data."""
        options = Options()
        options.parseOptions([])
        self.assertEqual(options.config.listen, ("tcp:9000:interface=127.0.0.1",))
        self.assertEqual(options.config.data_dir, "./artifactd-data")

    def test_repeatable_listen_and_overrides(self) -> None:
        """--listen is repeatable and --data-dir / --base-path override the file."""
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write("[storage]\ndata_dir = '/from/file'\n")
        options = Options()
        options.parseOptions(
            [
                "-c",
                path,
                "--listen",
                "tcp:1",
                "--listen",
                "tcp:2",
                "-d",
                "/cli",
                "--base-path",
                "/s3",
            ]
        )
        self.assertEqual(options.config.listen, ("tcp:1", "tcp:2"))
        self.assertEqual(options.config.data_dir, "/cli")
        self.assertEqual(options.config.base_path, "/s3")

    def test_missing_config_file(self) -> None:
        """A missing config file is a usage error naming the option and path."""
        with self.assertRaises(UsageError) as e:
            Options().parseOptions(["-c", "/nonexistent/artifactd.toml"])
        self.assertIn("/nonexistent/artifactd.toml", str(e.exception))

    def test_bad_key_in_file(self) -> None:
        """A bad key in the file stops option parsing (nothing starts)."""
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write("[server]\nlisten_on = 'tcp:1'\n")
        with self.assertRaises(UsageError) as e:
            Options().parseOptions(["-c", path])
        self.assertIn("server.listen_on", str(e.exception))


class ServerLimitsAndHostsTests(SynchronousTestCase):
    def test_virtual_host_domains(self) -> None:
        """virtual_host_domains is a list of DNS names, compared in lower case without a
        trailing dot; a scheme, port, wildcard or empty name is a usage error naming the key."""
        values = parse_toml(
            '[server]\nvirtual_host_domains = ["S3.Example.com.", "localhost"]', "f"
        )
        config = build_config(values, {}, {})
        self.assertEqual(config.virtual_host_domains, ("s3.example.com", "localhost"))
        for bad in ("https://s3.example.com", "s3.example.com:9000", "*.example.com", "", "a..b"):
            with self.assertRaises(UsageError) as e:
                build_config({"virtual_host_domains": (bad,)}, {}, {})
            self.assertIn("server.virtual_host_domains", str(e.exception))

    def test_request_head_limits(self) -> None:
        """max_request_head_bytes (8 KiB to 1 MiB) and max_headers (100 to 10000) are checked."""
        values = parse_toml("[server]\nmax_request_head_bytes = 131072\nmax_headers = 1000", "f")
        config = build_config(values, {}, {})
        self.assertEqual((config.max_request_head_bytes, config.max_headers), (131072, 1000))
        for key, value in [
            ("max_request_head_bytes", 8191),
            ("max_request_head_bytes", 2 * 1024 * 1024),
            ("max_headers", 99),
            ("max_headers", 10001),
        ]:
            with self.assertRaises(UsageError) as e:
                build_config({key: value}, {}, {})
            self.assertIn(f"server.{key}", str(e.exception))

    def test_spare_seconds(self) -> None:
        """storage.spare_seconds: 0 (no spare files) to 3600."""
        for value in (0, 3600):
            config = build_config(parse_toml(f"[storage]\nspare_seconds = {value}", "f"), {}, {})
            self.assertEqual(config.spare_seconds, value)
        for value in (-1, 3601):
            with self.assertRaises(UsageError) as e:
                build_config({"spare_seconds": value}, {}, {})
            self.assertIn("storage.spare_seconds", str(e.exception))
