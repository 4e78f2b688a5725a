# twisted.trial's assertion methods are unannotated.
# mypy: disable-error-code="no-untyped-call"
"""The AWS CLI (v1, ``aws s3`` and ``aws s3api``) as a subprocess against a real
``twistd -n artifactd``, over plain HTTP and over TLS (``AWS_CA_BUNDLE``)."""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request
from typing import Any

from tests.e2e.support import (
    BIN,
    DaemonTestCase,
    MiB,
    file_sha256,
    random_file,
    run,
    scratch,
    tree,
    write_tree,
)

AWS = os.path.join(BIN, "aws")

# Path-style addressing, and no retries so that a server error is not hidden by a retry.
AWS_CONFIG = """\
[default]
region = us-east-1
output = json
retry_mode = standard
max_attempts = 1
s3 =
    addressing_style = path
"""

SYNC_TREE = {
    "top.txt": b"top level\n",
    "empty.txt": b"",
    "dir a/file one.txt": b"spaces in names\n",
    "dir a/sub/ünïcödé.bin": bytes(range(256)) * 4,
    "plus+sign/100%.txt": b"percent and plus\n",
    "deep/er/and/deeper/leaf": b"leaf\n",
}


class AwsCliHTTPTests(DaemonTestCase):
    """``aws`` over plain HTTP."""

    def setUp(self) -> None:
        super().setUp()
        daemon = self.daemon
        self.env = daemon.client_env()
        config = self.env["AWS_CONFIG_FILE"]
        if not os.path.exists(config):
            with open(config, "w", encoding="utf-8") as f:
                f.write(AWS_CONFIG)
        self.s3 = daemon.client()

    # ------------------------------------------------------------- helpers
    def aws(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([AWS, "--endpoint-url", self.daemon.endpoint_url, *args], self.env, check=check)

    def api(self, *args: str) -> Any:
        """``aws s3api ...`` and its JSON output."""
        out = self.aws("s3api", *args).stdout
        return json.loads(out) if out.strip() else None

    def new_bucket(self) -> str:
        name = self.bucket_name()
        self.assertEqual(
            self.aws("s3", "mb", f"s3://{name}").stdout.strip(), f"make_bucket: {name}"
        )
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [o["Key"] for p in pages for o in p.get("Contents", [])]

    def accessed_actions(self, bucket: str) -> set[str]:
        """The S3 actions the daemon logged for ``bucket``."""
        return {
            e["action"]
            for e in self.daemon.events()
            if e.get("namespace") == "artifactd.access" and e.get("bucket") == bucket
        }

    # ------------------------------------------------------------- buckets
    def test_mb_ls_rb(self) -> None:
        """``s3 mb`` creates a bucket ``s3 ls`` lists; ``s3 rb`` removes it."""
        name = self.new_bucket()
        listed = [line.split()[-1] for line in self.aws("s3", "ls").stdout.splitlines()]
        self.assertIn(name, listed)
        again = self.aws("s3", "mb", f"s3://{name}", check=False)
        self.assertNotEqual(again.returncode, 0)
        self.assertIn("BucketAlreadyOwnedByYou", again.stderr)
        self.assertEqual(
            self.aws("s3", "rb", f"s3://{name}").stdout.strip(), f"remove_bucket: {name}"
        )
        listed = [line.split()[-1] for line in self.aws("s3", "ls").stdout.splitlines()]
        self.assertNotIn(name, listed)

    def test_rb_refuses_non_empty_bucket(self) -> None:
        """``s3 rb`` of a non-empty bucket fails with BucketNotEmpty; ``rb --force`` empties it."""
        name = self.new_bucket()
        for i in range(3):
            self.s3.put_object(Bucket=name, Key=f"f{i}", Body=b"x")
        refused = self.aws("s3", "rb", f"s3://{name}", check=False)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("BucketNotEmpty", refused.stderr)
        self.aws("s3", "rb", "--force", f"s3://{name}")
        self.assertNotIn(name, [b["Name"] for b in self.s3.list_buckets()["Buckets"]])

    # ------------------------------------------------------------- objects
    def test_cp_small_file_up_and_down(self) -> None:
        """``s3 cp`` uploads and downloads a small file byte for byte; ``s3 ls`` shows its size."""
        name = self.new_bucket()
        with scratch(self.daemon.workdir) as tmp:
            source = os.path.join(tmp, "small file.txt")
            data = b"hello from the aws cli\n" * 10
            with open(source, "wb") as f:
                f.write(data)
            self.aws("s3", "cp", "--no-progress", source, f"s3://{name}/docs/small file.txt")
            head = self.s3.head_object(Bucket=name, Key="docs/small file.txt")
            self.assertEqual(head["ETag"], f'"{hashlib.md5(data).hexdigest()}"')
            self.assertEqual(head["ContentType"], "text/plain")
            listing = self.aws("s3", "ls", f"s3://{name}/docs/").stdout.split()
            self.assertEqual(listing[-3:], [str(len(data)), "small", "file.txt"])
            target = os.path.join(tmp, "back.txt")
            self.aws("s3", "cp", "--no-progress", f"s3://{name}/docs/small file.txt", target)
            with open(target, "rb") as f:
                self.assertEqual(f.read(), data)

    def test_cp_stdin_and_stdout(self) -> None:
        """``s3 cp -`` uploads from stdin and ``s3 cp s3://... -`` writes the object to stdout."""
        name = self.new_bucket()
        data = os.urandom(100_000)
        argv = [AWS, "--endpoint-url", self.daemon.endpoint_url, "s3", "cp", "-"]
        up = subprocess.run(
            [*argv, f"s3://{name}/stream.bin"], env=self.env, input=data, capture_output=True
        )
        self.assertEqual(up.returncode, 0, up.stderr)
        down = subprocess.run(
            [*argv[:-1], f"s3://{name}/stream.bin", "-"], env=self.env, capture_output=True
        )
        self.assertEqual(down.returncode, 0, down.stderr)
        self.assertEqual(down.stdout, data)

    def test_cp_large_file_multipart(self) -> None:
        """``s3 cp`` of 20 MiB uses three 8 MiB-part multipart and downloads identical bytes."""
        name = self.new_bucket()
        with scratch(self.daemon.workdir) as tmp:
            source = os.path.join(tmp, "big.bin")
            digest = random_file(source, 20 * MiB)
            self.aws("s3", "cp", "--no-progress", source, f"s3://{name}/big.bin")
            head = self.s3.head_object(Bucket=name, Key="big.bin")
            self.assertTrue(head["ETag"].endswith('-3"'), head["ETag"])
            self.assertEqual(head["ContentLength"], 20 * MiB)
            headers = head["ResponseMetadata"]["HTTPHeaders"]
            self.assertEqual(headers["x-artifactd-digest"], f"sha256:{digest}")
            target = os.path.join(tmp, "down.bin")
            self.aws("s3", "cp", "--no-progress", f"s3://{name}/big.bin", target)
            self.assertEqual(file_sha256(target), digest)
        self.assertIn("CompleteMultipartUpload", self.accessed_actions(name))

    def test_ls_bucket_and_prefix(self) -> None:
        """``s3 ls`` shows directories as PRE and files with sizes; ``--recursive`` shows all."""
        name = self.new_bucket()
        for key, size in [("a.txt", 1), ("dir/b.txt", 22), ("dir/sub/c.txt", 333), ("dir2/d", 4)]:
            self.s3.put_object(Bucket=name, Key=key, Body=b"x" * size)
        top = self.aws("s3", "ls", f"s3://{name}").stdout.splitlines()
        self.assertEqual(
            [line.split() for line in top if "PRE" in line], [["PRE", "dir/"], ["PRE", "dir2/"]]
        )
        self.assertEqual([line.split()[-2:] for line in top if "PRE" not in line], [["1", "a.txt"]])
        sub = self.aws("s3", "ls", f"s3://{name}/dir/").stdout.splitlines()
        self.assertEqual([line.split()[-2:] for line in sub], [["PRE", "sub/"], ["22", "b.txt"]])
        everything = self.aws("s3", "ls", "--recursive", f"s3://{name}").stdout.splitlines()
        self.assertEqual(
            [line.split()[-2:] for line in everything],
            [["1", "a.txt"], ["22", "dir/b.txt"], ["333", "dir/sub/c.txt"], ["4", "dir2/d"]],
        )

    def test_sync_up_and_down(self) -> None:
        """``s3 sync`` copies a tree up and back identically; a second sync transfers nothing."""
        name = self.new_bucket()
        with scratch(self.daemon.workdir) as tmp:
            source = os.path.join(tmp, "src")
            write_tree(source, SYNC_TREE)
            self.aws("s3", "sync", "--no-progress", source, f"s3://{name}/tree")
            self.assertEqual(sorted(self.keys(name)), sorted(f"tree/{k}" for k in SYNC_TREE))
            again = self.aws("s3", "sync", "--no-progress", source, f"s3://{name}/tree")
            self.assertEqual(again.stdout.strip(), "")
            target = os.path.join(tmp, "dst")
            self.aws("s3", "sync", "--no-progress", f"s3://{name}/tree", target)
            self.assertEqual(tree(target), SYNC_TREE)
            down_again = self.aws("s3", "sync", "--no-progress", f"s3://{name}/tree", target)
            self.assertEqual(down_again.stdout.strip(), "")

    def test_sync_delete(self) -> None:
        """``s3 sync --delete`` removes remote objects whose local files are gone."""
        name = self.new_bucket()
        with scratch(self.daemon.workdir) as tmp:
            source = os.path.join(tmp, "src")
            write_tree(source, SYNC_TREE)
            self.aws("s3", "sync", "--no-progress", source, f"s3://{name}/tree")
            os.remove(os.path.join(source, "top.txt"))
            os.remove(os.path.join(source, "plus+sign", "100%.txt"))
            with open(os.path.join(source, "dir a", "file one.txt"), "ab") as f:
                f.write(b"changed size\n")
            out = self.aws("s3", "sync", "--no-progress", "--delete", source, f"s3://{name}/tree")
            self.assertIn(f"delete: s3://{name}/tree/top.txt", out.stdout)
            self.assertIn(f"delete: s3://{name}/tree/plus+sign/100%.txt", out.stdout)
            self.assertEqual(sorted(self.keys(name)), sorted(f"tree/{k}" for k in tree(source)))
            changed = self.s3.get_object(Bucket=name, Key="tree/dir a/file one.txt")
            self.assertEqual(changed["Body"].read(), b"spaces in names\nchanged size\n")

    def test_rm_recursive(self) -> None:
        """``s3 rm --recursive`` deletes every key under a prefix and nothing else."""
        name = self.new_bucket()
        with scratch(self.daemon.workdir) as tmp:
            source = os.path.join(tmp, "src")
            write_tree(source, SYNC_TREE)
            self.aws("s3", "sync", "--no-progress", source, f"s3://{name}/tree")
        self.s3.put_object(Bucket=name, Key="keep/me", Body=b"k")
        self.s3.put_object(Bucket=name, Key="tree-sibling", Body=b"k")
        out = self.aws("s3", "rm", "--recursive", f"s3://{name}/tree/")
        self.assertEqual(len(out.stdout.splitlines()), len(SYNC_TREE))
        self.assertEqual(self.keys(name), ["keep/me", "tree-sibling"])
        self.aws("s3", "rm", f"s3://{name}/keep/me")
        self.assertEqual(self.keys(name), ["tree-sibling"])

    def presign(self, key: str, *config_lines: str) -> str:
        """``aws s3 presign`` with extra lines in the ``s3 =`` section of the config."""
        config = os.path.join(self.daemon.workdir, f"aws-config-{len(config_lines)}")
        with open(config, "w", encoding="utf-8") as f:
            f.write(AWS_CONFIG + "".join(f"    {line}\n" for line in config_lines))
        env = dict(self.env, AWS_CONFIG_FILE=config)
        argv = [AWS, "--endpoint-url", self.daemon.endpoint_url, "s3", "presign", key]
        return run(argv, env).stdout.strip()

    def fetch(self, url: str) -> bytes:
        context = ssl.create_default_context(cafile=self.daemon.cert_path) if self.tls else None
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            body: bytes = response.read()
            return body

    def test_presign_sigv4(self) -> None:
        """``s3 presign`` with ``signature_version = s3v4`` gives a URL urllib can fetch."""
        name = self.new_bucket()
        self.s3.put_object(Bucket=name, Key="shared file", Body=b"presigned")
        url = self.presign(f"s3://{name}/shared file", "signature_version = s3v4")
        self.assertIn("X-Amz-Signature=", url)
        self.assertEqual(self.fetch(url), b"presigned")

    def test_presign_default(self) -> None:
        """A legacy SigV2 URL from ``s3 presign``'s default configuration gets a clear 400 error
        naming SigV4 (the README says how to ask the CLI for SigV4)."""
        name = self.new_bucket()
        self.s3.put_object(Bucket=name, Key="k", Body=b"presigned")
        url = self.presign(f"s3://{name}/k")
        with self.assertRaises(urllib.error.HTTPError) as e:
            self.fetch(url)
        with e.exception as error:
            self.assertEqual(error.code, 400)
            self.assertIn(b"AWS4-HMAC-SHA256", error.read())

    # ------------------------------------------------------------- s3api
    def test_s3api_put_head_list(self) -> None:
        """``s3api put-object``/``head-object``/``list-objects-v2`` report what was stored."""
        name = self.new_bucket()
        with scratch(self.daemon.workdir) as tmp:
            body = os.path.join(tmp, "body")
            data = b'{"artifact": true}\n'
            with open(body, "wb") as f:
                f.write(data)
            put = self.api(
                "put-object",
                "--bucket", name,
                "--key", "meta/data.json",
                "--body", body,
                "--content-type", "application/json",
                "--metadata", "Build=7,branch=main",
            )  # fmt: skip
        etag = f'"{hashlib.md5(data).hexdigest()}"'
        self.assertEqual(put["ETag"], etag)
        head = self.api("head-object", "--bucket", name, "--key", "meta/data.json")
        self.assertEqual(head["ContentLength"], len(data))
        self.assertEqual(head["ETag"], etag)
        self.assertEqual(head["ContentType"], "application/json")
        self.assertEqual(head["Metadata"], {"build": "7", "branch": "main"})
        self.s3.put_object(Bucket=name, Key="meta/other", Body=b"")
        self.s3.put_object(Bucket=name, Key="elsewhere", Body=b"")
        listed = self.api("list-objects-v2", "--bucket", name, "--prefix", "meta/")
        self.assertEqual([o["Key"] for o in listed["Contents"]], ["meta/data.json", "meta/other"])
        self.assertEqual(listed["Contents"][0]["ETag"], etag)
        missing = self.aws("s3api", "head-object", "--bucket", name, "--key", "nope", check=False)
        self.assertNotEqual(missing.returncode, 0)
        self.assertIn("404", missing.stderr)

    def test_s3api_multipart(self) -> None:
        """``s3api`` create-multipart-upload, upload-part and complete-multipart-upload work."""
        name = self.new_bucket()
        with scratch(self.daemon.workdir) as tmp:
            parts = [os.urandom(5 * MiB), os.urandom(12345)]
            paths = []
            for number, data in enumerate(parts, 1):
                path = os.path.join(tmp, f"part{number}")
                with open(path, "wb") as f:
                    f.write(data)
                paths.append(path)
            created = self.api("create-multipart-upload", "--bucket", name, "--key", "mp.bin")
            upload_id = created["UploadId"]
            etags = [
                self.api(
                    "upload-part",
                    "--bucket", name,
                    "--key", "mp.bin",
                    "--upload-id", upload_id,
                    "--part-number", str(number),
                    "--body", path,
                )["ETag"]
                for number, path in enumerate(paths, 1)
            ]  # fmt: skip
            self.assertEqual(etags, [f'"{hashlib.md5(p).hexdigest()}"' for p in parts])
            listed = self.api(
                "list-parts", "--bucket", name, "--key", "mp.bin", "--upload-id", upload_id
            )
            self.assertEqual([p["Size"] for p in listed["Parts"]], [5 * MiB, 12345])
            manifest = os.path.join(tmp, "parts.json")
            with open(manifest, "w", encoding="utf-8") as f:
                json.dump(
                    {"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]}, f
                )
            done = self.api(
                "complete-multipart-upload",
                "--bucket", name,
                "--key", "mp.bin",
                "--upload-id", upload_id,
                "--multipart-upload", f"file://{manifest}",
            )  # fmt: skip
        expected = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
        self.assertEqual(done["ETag"], f'"{expected}-2"')
        self.assertEqual(done["Key"], "mp.bin")
        got = self.s3.get_object(Bucket=name, Key="mp.bin")
        self.assertEqual(got["Body"].read(), b"".join(parts))


class AwsCliTLSTests(AwsCliHTTPTests):
    """``aws`` over HTTPS (aws-chunked uploads with a CRC32 trailer, 1 MiB chunks)."""

    tls = True
