"""Packaging: the wheel ships the twistd dropin without shadowing Twisted, and twistd finds it."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

from twisted.trial.unittest import SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


class PackagingTests(SynchronousTestCase):
    def _build_wheel(self) -> str:
        out: str = os.path.abspath(self.mktemp())
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
             "-w", out, ROOT],
            check=True,
            capture_output=True,
        )  # fmt: skip
        (wheel,) = [f for f in os.listdir(out) if f.endswith(".whl")]
        return os.path.join(out, wheel)

    def test_wheel_contents(self) -> None:
        """The wheel has the dropin and the package but no twisted/__init__.py or plugin cache."""
        with zipfile.ZipFile(self._build_wheel()) as whl:
            names = set(whl.namelist())
        self.assertIn("twisted/plugins/artifactd_plugin.py", names)
        self.assertIn("artifactd/tap.py", names)
        self.assertNotIn("twisted/__init__.py", names)
        self.assertNotIn("twisted/plugins/__init__.py", names)
        self.assertFalse([n for n in names if n.endswith("dropin.cache")])

    def test_regular_install_provides_the_plugin(self) -> None:
        """Installed from the wheel (not the work tree), twistd's plugin system finds artifactd."""
        target = os.path.abspath(self.mktemp())
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", target,
             self._build_wheel()],
            check=True,
            capture_output=True,
        )  # fmt: skip
        probe = (
            "from twisted.plugin import getPlugins\n"
            "from twisted.application.service import IServiceMaker\n"
            "import twisted.plugins.artifactd_plugin as m\n"
            "names = [p.tapname for p in getPlugins(IServiceMaker)]\n"
            "print(m.__file__); print('artifactd' in names)\n"
        )
        neutral = os.path.abspath(self.mktemp())
        os.makedirs(neutral)
        result = subprocess.run(
            [sys.executable, "-c", probe],
            cwd=neutral,
            env={**os.environ, "PYTHONPATH": target},
            check=True,
            capture_output=True,
            text=True,
        )
        plugin_file, listed = result.stdout.split()
        self.assertTrue(plugin_file.startswith(target), plugin_file)
        self.assertEqual(listed, "True")

    def test_editable_install_lists_plugin(self) -> None:
        """`twistd --help` run from a neutral directory lists artifactd (editable install)."""
        neutral = os.path.abspath(self.mktemp())
        os.makedirs(neutral)
        result = subprocess.run(
            [os.path.join(BIN, "twistd"), "--help"],
            cwd=neutral,
            check=True,
            capture_output=True,
            text=True,
        )
        self.assertIn("artifactd", result.stdout)
