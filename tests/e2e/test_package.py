"""Install and packaging (issue "operations"): `cmake --install` lays out
the binaries, the config, the unit and the man pages; cpack builds a .deb
with its runtime dependencies, a conffile and the service; the package,
unpacked into a scratch root with `dpkg -x`, runs from there; `lintian`
finds no error and no warning in it; the units pass `systemd-analyze
verify` and the man pages render without warnings.

Tools that are missing (dpkg-deb, cpack, lintian, systemd-analyze, groff)
make their tests skip with a message saying which, and fail in CI (CI=true:
tests/run installs them all).
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


MAN_PAGES = ("man8/sollold.8", "man8/sollol-exec.8", "man1/ollama-sim.1")


def need(*tools):
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        if os.environ.get("CI") == "true":
            raise AssertionError("%s not installed: tests/run installs it for CI"
                                 % ", ".join(missing))
        raise unittest.SkipTest("%s not installed" % ", ".join(missing))


def run(argv, **kw):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=300,
                          **kw)


def verify_unit(test, unit_text, binary, config, name="sollol.service", paths=None):
    """systemd-analyze verify on `unit_text` (saved as `name`) with its
    paths pointed at `binary` and `config` (verify checks that ExecStart
    exists), and any other `paths` {old: new}. Fails on any complaint:
    verify's exit status ignores unknown keys and bad values."""
    need("systemd-analyze")
    d = tempfile.mkdtemp(prefix="sollol-unit-")
    test.addCleanup(shutil.rmtree, d, True)
    text = unit_text.replace("/usr/bin/sollold", binary).replace("/etc/sollol/sollol.json",
                                                                   config)
    for old, new in (paths or {}).items():
        text = text.replace(old, new)
    path = os.path.join(d, name)
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
        for rel in ("bin/sollold", "bin/ollama-sim", "bin/sollol-exec", "etc/sollol/sollol.json",
                    "lib/systemd/system/sollol.service", "share/doc/sollol/operations.md",
                    "share/doc/sollol/copyright", "share/doc/sollol/changelog.gz") + tuple(
                        "share/man/%s.gz" % m for m in MAN_PAGES):
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

    def test_rpc_server_unit_verifies(self):
        # A template: verified as one instance (the port), with its RPC
        # server (ggml-rpc-server since llama.cpp 2026-06) pointed at a
        # program that exists here.
        with open(os.path.join(SRC, "conf", "ggml-rpc-server@.service")) as f:
            unit = f.read()
        self.assertIn("ExecStart=/usr/local/bin/ggml-rpc-server ", unit)
        verify_unit(self, unit, h.binary("sollold"), os.path.join(SRC, "conf", "sollol.json"),
                    name="ggml-rpc-server@50052.service",
                    paths={"/usr/local/bin/ggml-rpc-server": shutil.which("true")})

    def test_man_pages_render(self):
        need("groff")
        words = {"sollold.8": ("SIGHUP", "SIGTERM", "--check-config", "NOTIFY_SOCKET",
                               "sollol.service"),
                 "sollol-exec.8": ("PR_SET_PDEATHSIG", "127"),
                 "ollama-sim.1": ("--listen", "--model", "--fault", "/_sim/stats", "SIGUSR1")}
        for page, want in words.items():
            path = os.path.join(SRC, "docs", page)
            r = run(["groff", "-man", "-Tutf8", "-ww", "-z", path])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stderr.strip(), "", page + ": " + r.stderr)
            r = run(["groff", "-man", "-Tutf8", path])
            text = re.sub(".\x08", "", r.stdout).replace("\u2010", "-")  # no overstrike
            for word in want:
                self.assertIn(word, text, page)

    def test_man_page_options_match_help(self):
        # Every option ollama-sim --help lists is in its man page.
        r = run([h.binary("ollama-sim"), "--help"])
        with open(os.path.join(SRC, "docs", "ollama-sim.1")) as f:
            page = f.read().replace("\\-", "-")
        for opt in sorted(set(re.findall(r"(?m)^\s+(--[a-z-]+)", r.stdout))):
            self.assertIn(opt, page, "docs/ollama-sim.1 lacks " + opt)


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
        for p in ("./usr/bin/sollold", "./usr/bin/ollama-sim", "./usr/bin/sollol-exec",
                  "./etc/sollol/sollol.json", "./usr/lib/systemd/system/sollol.service",
                  "./usr/share/doc/sollol/operations.md", "./usr/share/doc/sollol/copyright",
                  "./usr/share/doc/sollol/changelog.gz") + tuple(
                      "./usr/share/man/%s.gz" % m for m in MAN_PAGES):
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

    def test_lintian(self):
        """Debian's package checker: no error and no warning (informational
        tags are allowed; they are printed)."""
        # What ships is a plain build (tests/run's): a sanitizer build is
        # never packaged, and the valgrind pass re-runs the same tree.
        with open(os.path.join(BUILD, "CMakeCache.txt")) as f:
            if "SOLLOL_SANITIZE:BOOL=ON" in f.read():
                self.skipTest("lintian checks the package of the plain build (tests/run)")
        if os.environ.get("SOLLOL_WRAP"):
            self.skipTest("lintian ran on this tree in tests/run; valgrind judges memory")
        need("lintian")
        r = run(["lintian", "--info", "--display-info", "--allow-root", self.deb])
        tags = [ln for ln in r.stdout.splitlines() if re.match(r"[EWIXPO]: ", ln)]
        bad = [ln for ln in tags if ln.startswith(("E: ", "W: "))]
        sys.stderr.write("\nlintian: %d tag(s)\n%s\n" % (len(tags), "\n".join(tags)))
        self.assertEqual(bad, [], "lintian:\n" + r.stdout + r.stderr)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_maintainer_scripts(self):
        """Shell that parses, and systemd reached the way debhelper's snippets
        do: deb-systemd-helper/-invoke, guarded; systemctl only for
        daemon-reload."""
        d = os.path.join(self.tmp, "control")
        r = run(["dpkg-deb", "-e", self.deb, d])
        self.assertEqual(r.returncode, 0, r.stderr)
        for name in ("postinst", "prerm", "postrm"):
            path = os.path.join(d, name)
            self.assertEqual(run(["sh", "-n", path]).returncode, 0, name)
            with open(path) as f:
                text = f.read()
            for line in text.splitlines():
                if "systemctl" in line:
                    self.assertIn("daemon-reload", line, name)
        with open(os.path.join(d, "prerm")) as f:
            self.assertIn("deb-systemd-invoke stop sollol.service", f.read())

    def test_binaries_stripped(self):
        need("readelf")
        for b in ("sollold", "ollama-sim", "sollol-exec"):
            r = run(["readelf", "-S", os.path.join(self.root, "usr/bin", b)])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertNotIn(".symtab", r.stdout, b)
            self.assertNotIn(".debug_info", r.stdout, b)

    def test_copyright_and_changelog(self):
        doc = os.path.join(self.root, "usr/share/doc/sollol")
        with open(os.path.join(doc, "copyright")) as f:
            text = f.read()
        self.assertTrue(text.startswith(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"))
        self.assertIn("License: MIT", text)
        import gzip
        with gzip.open(os.path.join(doc, "changelog.gz"), "rt") as f:
            top = f.readline()
        r = run(["dpkg-deb", "-f", self.deb, "Version", "Maintainer"])
        version = r.stdout.split("\n")[0].split(": ", 1)[1]
        self.assertTrue(top.startswith("sollol (%s) " % version), top)
        self.assertNotIn("localhost", r.stdout)

    def test_packaged_unit_verifies(self):
        with open(os.path.join(self.root, "usr/lib/systemd/system/sollol.service")) as f:
            unit = f.read()
        self.assertIn("ExecStart=/usr/bin/sollold --config /etc/sollol/sollol.json", unit)
        verify_unit(self, unit, os.path.join(self.root, "usr/bin/sollold"),
                    os.path.join(self.root, "etc/sollol/sollol.json"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
