"""The official Ollama and OpenAI JavaScript clients (npm `ollama`, `openai`)
against sollold and three simulated nodes: what a user of those libraries
sees. The packages are installed from the npm registry into the build
directory on first use; where node/npm or the registry is unavailable the
test is skipped with the reason (never silently passed)."""

import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

CLIENTS_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clients")


def install_clients():
    """Returns the folder with node_modules, or raises unittest.SkipTest."""
    return harness.npm_install(CLIENTS_SRC, ("package.json", "clients.mjs"), "js-clients",
                               "official JS client test")


class OfficialClients(unittest.TestCase):
    def test_ollama_and_openai_js_clients(self):
        dest = install_clients()
        sims = [
            harness.start_sim("--tokens-per-second", "20",
                              models=("llama3.2:3b,loaded", "nomic-embed-text,embed,loaded"),
                              test=self),
            harness.start_sim("--tokens-per-second", "20",
                              models=("llama3.2:3b", "qwen2.5:7b,loaded"), test=self),
        ]
        args = ["--listen", "127.0.0.1:0"]
        for i, s in enumerate(sims):
            args += ["--node", "n%d=%s" % (i, s.url)]
        d = harness.start_process("sollold", args, test=self)
        r = subprocess.run(["node", "clients.mjs", d.url, "llama3.2:3b", "nomic-embed-text"],
                           cwd=dest, capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout)
        for k, v in out.items():
            if k.endswith("missing_model"):
                continue
            self.assertNotIn("error", v, "%s: %s" % (k, v))

        s = out["ollama_chat_stream"]
        self.assertEqual(s["chunks"], 9, s)  # 8 tokens + the done line
        self.assertTrue(s["done"] and s["eval_count"] == 8 and s["done_reason"] == "length", s)
        # 8 tokens 50 ms apart arrive over ~400 ms; a buffered answer would
        # arrive at once. The margin absorbs a loaded machine's scheduling.
        self.assertGreater(s["spread_ms"], 100, "chunks did not arrive as they were produced")
        self.assertTrue(out["ollama_chat"]["content"] and out["ollama_chat"]["done"])
        self.assertTrue(out["ollama_generate"]["response"] and out["ollama_generate"]["context"])
        self.assertEqual(sorted(out["ollama_list"]["names"]),
                         ["llama3.2:3b", "nomic-embed-text:latest", "qwen2.5:7b"])
        self.assertIn("llama3.2:3b", out["ollama_ps"]["names"])
        self.assertTrue(out["ollama_show"]["has_details"])
        self.assertEqual(out["ollama_embed"]["count"], 3)
        m = out["ollama_missing_model"]
        self.assertTrue(m["threw"] and m["status"] == 404 and "not found" in m["message"], m)

        self.assertEqual(out["openai_chat"]["object"], "chat.completion")
        self.assertTrue(out["openai_chat"]["content"])
        st = out["openai_chat_stream"]
        self.assertGreaterEqual(st["chunks"], 8, st)
        self.assertGreater(st["spread_ms"], 100, st)
        self.assertIn("llama3.2:3b", out["openai_models"]["ids"])
        self.assertEqual(out["openai_embeddings"]["count"], 2)
        om = out["openai_missing_model"]
        self.assertTrue(om["threw"] and om["status"] == 404, om)


if __name__ == "__main__":
    unittest.main()
