"""Tests of the Python client against a running registry (tests/python_test.go starts one).

MODELREG_TEST_URL is the registry's HTTP API; MODELREG_TEST_TOKEN_<NAME> the tokens of its principals
(alice approves, ci registers, ops rolls back, bob has no role on the model); MODELREG_TEST_SOURCE an
s3:// prefix holding a model.bin the worker can import.
"""

import os
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from modelreg import ApiError, Client  # noqa: E402

URL = os.environ.get("MODELREG_TEST_URL")


def client(who=None):
    return Client(URL, token=os.environ[f"MODELREG_TEST_TOKEN_{who.upper()}"] if who else "")


@unittest.skipUnless(URL, "MODELREG_TEST_URL is not set (tests/python_test.go runs these)")
class LifecycleTest(unittest.TestCase):
    model = "py-fraud"

    def test_lifecycle(self):
        ci, alice, anon = client("ci"), client("alice"), client()
        ops = client("ops")
        ops.set_policy(self.model, {"thresholds": [{"metric": "accuracy", "op": ">=", "value": 0.9}]})
        self.assertEqual(anon.policy(self.model)["thresholds"][0]["metric"], "accuracy")
        self.assertIsNone(anon.production(self.model))

        # A deployer watches before anything is in production.
        seen = []
        started = threading.Event()

        def watch():
            for prod in anon.watch_production(self.model, wait=30, stop_after=120):
                seen.append(prod)
                started.set()
                if prod is not None:
                    return

        t = threading.Thread(target=watch, daemon=True)
        t.start()
        self.assertTrue(started.wait(30))

        res = ci.register(self.model, source_uri=os.environ["MODELREG_TEST_SOURCE"],
                          metrics={"accuracy": 0.94}, params={"lr": "0.1"}, tags={"team": "risk"},
                          source_run="run-42", idempotency_key="py-1")
        version = res["version"]
        self.assertEqual(ci.wait(self.model, version, until={"PendingApproval"}, timeout=120), "PendingApproval")
        again = ci.register(self.model, source_uri=os.environ["MODELREG_TEST_SOURCE"],
                            metrics={"accuracy": 0.94}, idempotency_key="py-1")
        self.assertTrue(again["existing"])
        self.assertEqual(again["version"], version)

        v = anon.version(self.model, version)
        self.assertEqual(v["registeredBy"], "ci")
        self.assertEqual(v["tags"], {"team": "risk"})
        self.assertEqual([f["path"] for f in v["files"]], ["model.bin"])

        with self.assertRaises(ApiError) as e:
            client("bob").approve(self.model, version)
        self.assertEqual((e.exception.status, e.exception.code), (403, "forbidden"))
        with self.assertRaises(ApiError) as e:
            anon.approve(self.model, version)
        self.assertEqual(e.exception.code, "unauthenticated")
        with self.assertRaises(ApiError) as e:
            alice.approve(self.model, version, digest="sha256:" + "0" * 64)
        self.assertEqual(e.exception.code, "refused")

        self.assertEqual(alice.approve(self.model, version, comment="ok")["stage"], "Approved")
        t.join(60)
        self.assertFalse(t.is_alive(), "the watch did not see the promotion")
        self.assertIsNone(seen[0])
        self.assertEqual(seen[-1]["version"], version)
        self.assertEqual(seen[-1]["artifacts"][0]["path"], "model.bin")
        self.assertEqual(anon.wait(self.model, version, until={"Production"}), "Production")

        found = list(anon.versions(self.model, stage="Production", tags={"team": "risk"}, metrics=["accuracy>=0.9"]))
        self.assertEqual([x["version"] for x in found], [version])
        self.assertIn(self.model, [m["name"] for m in anon.models()])
        self.assertEqual(alice.whoami(self.model)["principal"], "alice")

    def test_directory_and_pull(self):
        model = "py-dir"
        ci, alice = client("ci"), client("alice")
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(os.path.join(d, "run", "config"))
            with open(os.path.join(d, "run", "model.bin"), "wb") as f:
                f.write(os.urandom(300_000))
            with open(os.path.join(d, "run", "config", "params.yaml"), "w") as f:
                f.write("depth: 6\n")
            res = ci.register(model, directory=os.path.join(d, "run"), metrics={"accuracy": 0.97})
            version = res["version"]
            self.assertEqual(ci.wait(model, version, until={"PendingApproval"}, timeout=120), "PendingApproval")
            # The same directory again: the same version (content key), nothing sent twice.
            self.assertTrue(ci.register(model, directory=os.path.join(d, "run"), metrics={"accuracy": 0.97})["existing"])
            alice.approve(model, version)
            client().wait(model, version, until={"Production"})
            out = os.path.join(d, "pulled")
            self.assertEqual(client().pull(model, out), version)
            for rel in ("model.bin", "config/params.yaml"):
                with open(os.path.join(d, "run", rel), "rb") as a, open(os.path.join(out, rel), "rb") as b:
                    self.assertEqual(a.read(), b.read(), rel)
            self.assertEqual(sorted(os.listdir(out)), ["config", "model.bin"])  # no temporary files left
            os.symlink("/etc/passwd", os.path.join(d, "run", "link"))
            with self.assertRaises(ValueError):
                ci.register(model, directory=os.path.join(d, "run"))

    def test_errors(self):
        anon = client()
        # s3:// sources only from the prefixes the registry allows: not the registry's own bucket, not a
        # sibling prefix of the allowed one.
        for uri in ("s3://registry/manifests", "s3://training/runs-old", "s3://secrets/"):
            with self.assertRaises(ApiError) as e:
                client("ci").register(self.model, source_uri=uri, idempotency_key="exfil")
            self.assertEqual((e.exception.status, e.exception.code), (403, "source_not_allowed"), uri)
        with self.assertRaises(ApiError) as e:
            anon.model("no-such-model")
        self.assertEqual((e.exception.status, e.exception.code), (404, "not_found"))
        with self.assertRaises(ApiError) as e:
            list(anon.versions(stage="Deployed"))
        self.assertEqual(e.exception.code, "bad_filter")
        with self.assertRaises(ApiError) as e:
            Client(URL, token="not-a-token").model(self.model)
        self.assertEqual(e.exception.code, "unauthenticated")
        with self.assertRaises(ValueError):
            client("ci").register(self.model)


if __name__ == "__main__":
    unittest.main()
