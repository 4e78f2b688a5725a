# twisted.trial's assertion methods are unannotated.
# mypy: disable-error-code="no-untyped-call"
"""s3cmd (its own SigV4 signing, path-style addressing) as a subprocess against a real
``twistd -n artifactd``, over plain HTTP and over TLS (certificate and host name checked)."""

from __future__ import annotations

import hashlib
import os
import subprocess

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

S3CMD = os.path.join(BIN, "s3cmd")

SYNC_TREE = {
    "readme.txt": b"read me\n",
    "with space/ünïcödé name.txt": b"unicode and spaces\n",
    "plus+sign/100%.bin": bytes(range(256)) * 8,
    "nested/a/b/c.txt": b"deep\n",
    # Same contents as readme.txt: s3cmd tries a server-side copy for duplicates.
    "nested/copy-of-readme.txt": b"read me\n",
}


class S3cmdHTTPTests(DaemonTestCase):
    """s3cmd over plain HTTP."""

    def setUp(self) -> None:
        super().setUp()
        daemon = self.daemon
        self.config = os.path.join(daemon.workdir, "s3cfg")
        if not os.path.exists(self.config):
            access, secret = daemon.credentials()
            address = f"127.0.0.1:{daemon.port}"
            with open(self.config, "w", encoding="utf-8") as f:
                f.write(
                    "[default]\n"
                    f"access_key = {access}\n"
                    f"secret_key = {secret}\n"
                    f"host_base = {address}\n"
                    f"host_bucket = {address}\n"  # no %(bucket)s: path-style addressing
                    "bucket_location = us-east-1\n"
                    "signature_v2 = False\n"
                    f"use_https = {daemon.tls}\n"
                    f"ca_certs_file = {daemon.cert_path or ''}\n"
                    "check_ssl_certificate = True\n"
                    "check_ssl_hostname = True\n"
                    "progress_meter = False\n"
                )
        self.env = dict(os.environ, HOME=daemon.workdir)
        self.s3 = daemon.client()

    # ------------------------------------------------------------- helpers
    def s3cmd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([S3CMD, "-c", self.config, *args], self.env, check=check)

    def new_bucket(self) -> str:
        name = self.bucket_name()
        out = self.s3cmd("mb", f"s3://{name}").stdout
        self.assertIn(f"Bucket 's3://{name}/' created", out)
        return name

    def keys(self, bucket: str) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [o["Key"] for p in pages for o in p.get("Contents", [])]

    def ls(self, *args: str) -> list[list[str]]:
        return [line.split() for line in self.s3cmd("ls", *args).stdout.splitlines()]

    # ------------------------------------------------------------- tests
    def test_mb_ls_rb(self) -> None:
        """``mb`` creates a bucket that ``ls`` lists and ``rb`` removes."""
        name = self.new_bucket()
        self.assertIn(f"s3://{name}", [row[-1] for row in self.ls()])
        again = self.s3cmd("mb", f"s3://{name}", check=False)
        self.assertNotEqual(again.returncode, 0)
        self.assertIn("BucketAlreadyOwnedByYou", again.stderr)
        self.assertIn(f"Bucket 's3://{name}/' removed", self.s3cmd("rb", f"s3://{name}").stdout)
        self.assertNotIn(f"s3://{name}", [row[-1] for row in self.ls()])

    def test_put_get_small(self) -> None:
        """``put`` and ``get`` of a small file round-trip its bytes; ``info`` shows size and MD5."""
        name = self.new_bucket()
        data = b"small s3cmd payload\n" * 3
        with scratch(self.daemon.workdir) as tmp:
            source = os.path.join(tmp, "small.txt")
            with open(source, "wb") as f:
                f.write(data)
            self.s3cmd("put", source, f"s3://{name}/dir/small file.txt")
            head = self.s3.head_object(Bucket=name, Key="dir/small file.txt")
            self.assertEqual(head["ETag"], f'"{hashlib.md5(data).hexdigest()}"')
            self.assertEqual(head["ContentType"], "text/plain")
            target = os.path.join(tmp, "back.txt")
            self.s3cmd("get", f"s3://{name}/dir/small file.txt", target)
            with open(target, "rb") as f:
                self.assertEqual(f.read(), data)
        info = self.s3cmd("info", f"s3://{name}/dir/small file.txt").stdout
        self.assertIn(f"File size: {len(data)}", info)
        self.assertIn(f"MD5 sum:   {hashlib.md5(data).hexdigest()}", info)
        self.assertIn("MIME type: text/plain", info)

    def test_put_get_multipart(self) -> None:
        """A 20 MiB ``put`` with 5 MiB chunks is a 4-part upload; ``get`` returns the same bytes."""
        name = self.new_bucket()
        with scratch(self.daemon.workdir) as tmp:
            source = os.path.join(tmp, "big.bin")
            digest = random_file(source, 20 * MiB)
            self.s3cmd("put", "--multipart-chunk-size-mb=5", source, f"s3://{name}/big.bin")
            head = self.s3.head_object(Bucket=name, Key="big.bin")
            self.assertTrue(head["ETag"].endswith('-4"'), head["ETag"])
            headers = head["ResponseMetadata"]["HTTPHeaders"]
            self.assertEqual(headers["x-artifactd-digest"], f"sha256:{digest}")
            self.assertIn("s3cmd-attrs", head["Metadata"])
            target = os.path.join(tmp, "down.bin")
            self.s3cmd("get", f"s3://{name}/big.bin", target)
            self.assertEqual(file_sha256(target), digest)
            info = self.s3cmd("info", f"s3://{name}/big.bin").stdout
            self.assertIn(f"File size: {20 * MiB}", info)

    def test_ls_and_la(self) -> None:
        """``ls`` shows DIR entries and objects with sizes; ``la`` lists every bucket's objects."""
        name = self.new_bucket()
        for key, size in [("top.txt", 3), ("dir/in.txt", 44), ("dir/sub/deep.txt", 5)]:
            self.s3.put_object(Bucket=name, Key=key, Body=b"x" * size)
        rows = self.ls(f"s3://{name}")
        self.assertIn(["DIR", f"s3://{name}/dir/"], rows)
        self.assertIn(["3", f"s3://{name}/top.txt"], [row[-2:] for row in rows])
        self.assertEqual(len(rows), 2)
        sub = self.ls(f"s3://{name}/dir/")
        self.assertEqual(
            [row[-2:] for row in sub],
            [["DIR", f"s3://{name}/dir/sub/"], ["44", f"s3://{name}/dir/in.txt"]],
        )
        recursive = self.ls("--recursive", f"s3://{name}")
        self.assertEqual(len(recursive), 3)
        everything = self.s3cmd("la").stdout
        self.assertIn(f"s3://{name}/top.txt", everything)
        self.assertIn(f"s3://{name}/dir/", everything)

    def test_info_bucket(self) -> None:
        """``info`` of a bucket reports its location (optional sub-resources answered 501)."""
        name = self.new_bucket()
        info = self.s3cmd("info", f"s3://{name}").stdout
        self.assertIn(f"s3://{name}/ (bucket):", info)
        self.assertIn("Location:  us-east-1", info)

    def test_sync_up_and_down(self) -> None:
        """``sync`` copies a tree up and back identically; a repeated sync uploads nothing."""
        name = self.new_bucket()
        with scratch(self.daemon.workdir) as tmp:
            source = os.path.join(tmp, "src")
            write_tree(source, SYNC_TREE)
            self.s3cmd("sync", source + "/", f"s3://{name}/tree/")
            self.assertEqual(sorted(self.keys(name)), sorted(f"tree/{k}" for k in SYNC_TREE))
            for key, data in SYNC_TREE.items():
                got = self.s3.get_object(Bucket=name, Key=f"tree/{key}")["Body"].read()
                self.assertEqual(got, data, key)
            again = self.s3cmd("sync", source + "/", f"s3://{name}/tree/")
            self.assertNotIn("upload:", again.stdout)
            target = os.path.join(tmp, "dst")
            self.s3cmd("sync", f"s3://{name}/tree/", target + "/")
            self.assertEqual(tree(target), SYNC_TREE)

    def test_sync_delete_removed(self) -> None:
        """``sync --delete-removed`` deletes remote objects whose local files are gone."""
        name = self.new_bucket()
        with scratch(self.daemon.workdir) as tmp:
            source = os.path.join(tmp, "src")
            write_tree(source, SYNC_TREE)
            self.s3cmd("sync", source + "/", f"s3://{name}/tree/")
            os.remove(os.path.join(source, "readme.txt"))
            self.s3cmd("sync", "--delete-removed", source + "/", f"s3://{name}/tree/")
            self.assertEqual(sorted(self.keys(name)), sorted(f"tree/{k}" for k in tree(source)))

    def test_del_and_rb(self) -> None:
        """``del`` removes one object, ``del --recursive`` a prefix; then ``rb`` succeeds."""
        name = self.new_bucket()
        for key in ("one", "many/a", "many/b c", "many/ü/d"):
            self.s3.put_object(Bucket=name, Key=key, Body=b"x")
        self.assertIn(f"delete: 's3://{name}/one'", self.s3cmd("del", f"s3://{name}/one").stdout)
        self.assertEqual(sorted(self.keys(name)), ["many/a", "many/b c", "many/ü/d"])
        refused = self.s3cmd("rb", f"s3://{name}", check=False)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("BucketNotEmpty", refused.stderr)
        out = self.s3cmd("del", "--recursive", "--force", f"s3://{name}/many/").stdout
        self.assertEqual(out.count("delete:"), 3)
        self.assertEqual(self.keys(name), [])
        self.s3cmd("rb", f"s3://{name}")
        self.assertNotIn(name, [b["Name"] for b in self.s3.list_buckets()["Buckets"]])


class S3cmdTLSTests(S3cmdHTTPTests):
    """s3cmd over HTTPS."""

    tls = True
