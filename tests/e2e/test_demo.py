"""`sollold --demo`: the README's first experience. The daemon starts its own
simulated nodes, the README's curl example streams at once, and no child
process outlives the daemon, however it ends."""

import os
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def children_of(pid):
    """PIDs whose parent is pid (from /proc)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(name))
        except (OSError, IndexError, ValueError):
            pass
    return out


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


class Demo(unittest.TestCase):
    def start(self, check_exit=True):
        return harness.start_process("sollold", ["--demo", "--listen", "127.0.0.1:0"], test=self,
                                     check_exit=check_exit)

    def test_readme_chat_streams(self):
        d = self.start()
        body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}
        with harness.open_stream("POST", d.url + "/api/chat", body) as s:
            lines = list(s.lines())
        self.assertGreater(len(lines), 2)
        self.assertTrue(lines[-1].json["done"])
        self.assertGreater(lines[-1].t - lines[0].t, 0.05, "tokens should arrive over time")
        tags = harness.get_json(d.url + "/api/tags")
        names = {m["name"] for m in tags["models"]}
        self.assertTrue({"llama3.2:latest", "qwen2.5:7b", "nomic-embed-text:latest"} <= names,
                        names)
        self.assertEqual(len(children_of(d.popen.pid)), 3)

    def test_sigterm_stops_children(self):
        d = self.start()
        kids = children_of(d.popen.pid)
        self.assertEqual(len(kids), 3)
        d.signal(signal.SIGTERM)
        harness.wait_until(lambda: not d.alive(), timeout=10, msg="daemon exit")
        self.assertEqual(d.popen.wait(), 0)
        harness.wait_until(lambda: not any(alive(k) for k in kids), timeout=5,
                           msg="simulators gone")

    def test_sigkill_leaves_no_orphan(self):
        d = self.start(check_exit=False)
        kids = children_of(d.popen.pid)
        self.assertEqual(len(kids), 3)
        d.signal(signal.SIGKILL)
        # Their stdin closes with the daemon: they exit by themselves.
        harness.wait_until(lambda: not any(alive(k) for k in kids), timeout=5,
                           msg="simulators exit after the daemon is killed")


class JsonLogs(unittest.TestCase):
    def test_every_line_is_a_json_object(self):
        import json
        d = harness.start_process("sollold", ["--demo", "--listen", "127.0.0.1:0",
                                              "--log-format", "json"], test=self)
        r = harness.request("POST", d.url + "/api/chat",
                            {"model": "llama3.2", "messages": [{"role": "user", "content": "q\"\n"}],
                             "stream": False})
        self.assertEqual(r.status, 200)
        d.stop()
        lines = [l for l in d.stderr_text().splitlines()
                 if l.strip() and "ollama-sim" not in l]  # the simulators log as text
        self.assertGreater(len(lines), 2)
        for line in lines:
            obj = json.loads(line)
            # Every line has these; access lines add their own fields.
            self.assertTrue({"time", "tag", "level", "msg"} <= set(obj), line)
            self.assertEqual(obj["tag"], "sollold")
        self.assertTrue(any("/api/chat" in json.loads(l)["msg"] for l in lines))


if __name__ == "__main__":
    unittest.main()
