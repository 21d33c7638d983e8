"""Install and packaging (issue "operations"): `cmake --install` lays out
the binaries, the config, the unit and the man page; cpack builds a .deb
with its runtime dependencies, a conffile and the service; the package,
unpacked into a scratch root with `dpkg -x`, runs from there; the unit
passes `systemd-analyze verify` and the man page renders without warnings.

Tools that are missing (dpkg-deb, cpack, systemd-analyze, groff) make their
tests skip with a message saying which.
Run: python3 -B tests/e2e/test_package.py (SOLLOL_BUILD_DIR selects the build).
"""

import glob
import json
import re
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

BUILD = h.build_dir()
SRC = os.environ.get("SOLLOL_SRC_DIR") or h.REPO_ROOT


def need(*tools):
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        raise unittest.SkipTest("%s not installed" % ", ".join(missing))


def run(argv, **kw):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=300,
                          **kw)


def verify_unit(test, unit_text, binary, config):
    """systemd-analyze verify on `unit_text` with its paths pointed at
    `binary` and `config` (verify checks that ExecStart exists). Fails on
    any complaint: verify's exit status ignores unknown keys and bad values."""
    need("systemd-analyze")
    d = tempfile.mkdtemp(prefix="sollol-unit-")
    test.addCleanup(shutil.rmtree, d, True)
    text = unit_text.replace("/usr/bin/sollold", binary).replace("/etc/sollol/sollol.json",
                                                                   config)
    path = os.path.join(d, "sollol.service")
    with open(path, "w") as f:
        f.write(text)
    r = run(["systemd-analyze", "verify", "--man=no", path])
    test.assertEqual(r.returncode, 0, r.stderr)
    test.assertEqual(r.stderr.strip(), "", "systemd-analyze verify complained:\n" + r.stderr)


class InstallTest(unittest.TestCase):
    def test_cmake_install_layout(self):
        need("cmake")
        prefix = tempfile.mkdtemp(prefix="sollol-install-")
        self.addCleanup(shutil.rmtree, prefix, True)
        r = run(["cmake", "--install", BUILD, "--prefix", prefix])
        self.assertEqual(r.returncode, 0, r.stderr)
        for rel in ("bin/sollold", "bin/ollama-sim", "etc/sollol/sollol.json",
                    "lib/systemd/system/sollol.service", "share/man/man8/sollold.8",
                    "share/doc/sollol/operations.md"):
            self.assertTrue(os.path.isfile(os.path.join(prefix, rel)), rel)
        # The unit names this prefix's paths, not Debian's.
        with open(os.path.join(prefix, "lib/systemd/system/sollol.service")) as f:
            unit = f.read()
        self.assertIn("ExecStart=%s/bin/sollold --config %s/etc/sollol/sollol.json"
                      % (prefix, prefix), unit)
        r = run([os.path.join(prefix, "bin/sollold"), "--config",
                 os.path.join(prefix, "etc/sollol/sollol.json"), "--check-config"])
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_service_unit_verifies(self):
        with open(os.path.join(SRC, "conf", "sollol.service")) as f:
            unit = f.read()
        for line in ("Type=notify", "WatchdogSec=", "ExecReload=/bin/kill -HUP $MAINPID",
                     "DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict",
                     "ProtectHome=read-only", "PrivateTmp=yes",
                     "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "LimitNOFILE=",
                     "Restart=on-failure"):
            self.assertIn(line, unit)
        verify_unit(self, unit, h.binary("sollold"), os.path.join(SRC, "conf", "sollol.json"))

    def test_man_page_renders(self):
        need("groff")
        r = run(["groff", "-man", "-Tutf8", "-ww", "-z", os.path.join(SRC, "docs", "sollold.8")])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr.strip(), "", r.stderr)
        r = run(["groff", "-man", "-Tutf8", os.path.join(SRC, "docs", "sollold.8")])
        text = re.sub(".\x08", "", r.stdout).replace("\u2010", "-")  # no overstrike
        for word in ("SIGHUP", "SIGTERM", "--check-config", "NOTIFY_SOCKET", "sollol.service"):
            self.assertIn(word, text)


class PackageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        need("cpack", "dpkg-deb")
        cls.tmp = tempfile.mkdtemp(prefix="sollol-deb-")
        r = run(["cpack", "-G", "DEB", "--config", os.path.join(BUILD, "CPackConfig.cmake"),
                 "-B", cls.tmp])
        if r.returncode != 0:
            shutil.rmtree(cls.tmp, True)
            raise AssertionError("cpack failed:\n" + r.stdout + r.stderr)
        debs = glob.glob(os.path.join(cls.tmp, "*.deb"))
        assert len(debs) == 1, debs
        cls.deb = debs[0]
        cls.root = os.path.join(cls.tmp, "root")
        r = run(["dpkg-deb", "-x", cls.deb, cls.root])  # what `dpkg -x` does
        assert r.returncode == 0, r.stderr

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, True)

    def test_contents(self):
        r = run(["dpkg-deb", "-c", self.deb])
        self.assertEqual(r.returncode, 0, r.stderr)
        paths = {line.split()[-1] for line in r.stdout.splitlines()}
        for p in ("./usr/bin/sollold", "./usr/bin/ollama-sim", "./etc/sollol/sollol.json",
                  "./usr/lib/systemd/system/sollol.service", "./usr/share/man/man8/sollold.8",
                  "./usr/share/doc/sollol/operations.md"):
            self.assertIn(p, paths)
        self.assertFalse([p for p in paths if p.startswith("./usr/local")], paths)

    def test_metadata(self):
        fields = {}
        for name in ("Package", "Version", "Architecture", "Depends", "Description"):
            r = run(["dpkg-deb", "-f", self.deb, name])
            self.assertEqual(r.returncode, 0, r.stderr)
            fields[name] = r.stdout.strip()
        self.assertEqual(fields["Package"], "sollol")
        r = run([h.binary("sollold"), "--version"])
        self.assertIn(fields["Version"], r.stdout)
        for lib in ("libmicrohttpd", "libcurl", "libuv1", "libcjson", "libc6"):
            self.assertIn(lib, fields["Depends"])
        r = run(["dpkg-deb", "-I", self.deb, "conffiles"])
        self.assertEqual(r.stdout.split(), ["/etc/sollol/sollol.json"])

    def test_unpacked_binary_runs(self):
        sollold = os.path.join(self.root, "usr/bin/sollold")
        conf = os.path.join(self.root, "etc/sollol/sollol.json")
        r = run([sollold, "--version"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("sollold", r.stdout)
        r = run([sollold, "--config", conf, "--check-config"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("configuration OK", r.stdout)
        r = run([sollold, "--config", conf, "--print-config"])
        self.assertEqual(r.returncode, 0, r.stderr)
        printed = json.loads(r.stdout)
        self.assertIn("grace_ms", printed["shutdown"])
        self.assertIn("cidrs", printed["discovery"])
        # Serving: the packaged config, pointed at a simulator (the packaged
        # one, next to sollold) on a free port.
        sim = h.Proc([os.path.join(self.root, "usr/bin/ollama-sim"), "--listen", "127.0.0.1:0",
                      "--model", "llama3.2:3b,loaded"])
        self.addCleanup(sim.close)
        d = h.Proc([sollold, "--config", conf, "--listen", "127.0.0.1:0", "--node",
                    "a=" + sim.url])
        self.addCleanup(d.close)
        res = h.post_json(d.url + "/api/generate", {"model": "llama3.2:3b", "prompt": "x",
                                                    "stream": False,
                                                    "options": {"num_predict": 3}})
        self.assertEqual(res.status, 200)
        self.assertTrue(res.json()["done"])
        self.assertEqual(d.stop(), 0)

    def test_packaged_unit_verifies(self):
        with open(os.path.join(self.root, "usr/lib/systemd/system/sollol.service")) as f:
            unit = f.read()
        self.assertIn("ExecStart=/usr/bin/sollold --config /etc/sollol/sollol.json", unit)
        verify_unit(self, unit, os.path.join(self.root, "usr/bin/sollold"),
                    os.path.join(self.root, "etc/sollol/sollol.json"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
