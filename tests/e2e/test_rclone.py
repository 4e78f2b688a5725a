# twisted.trial's assertion methods are unannotated.
# mypy: disable-error-code="no-untyped-call"
"""rclone (Debian's package; its S3 backend with ``provider = Other``) as a subprocess against a
real ``twistd -n artifactd``, over plain HTTP and over TLS (``--ca-cert``).

The remote is configured the documented way without a config file: ``RCLONE_CONFIG_<NAME>_*``
environment variables.  Every rclone default is left on (ListObjects v1, MD5 checks, the
``X-Amz-Meta-Mtime`` modification times, the 200 MiB upload cutoff) except retries: with
``--retries 1 --low-level-retries 1`` a server error fails the test instead of being retried
away, as ``max_attempts=1`` does for the boto3 tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

from botocore.exceptions import ClientError

from tests.e2e.support import (
    DaemonTestCase,
    MiB,
    file_sha256,
    random_file,
    run,
    tree,
    write_tree,
)

RCLONE = shutil.which("rclone") or "rclone"
REMOTE = "artifactd"

SMALL_TREE = {
    "readme.txt": b"read me\n",
    "with space/\u00fcn\u00efc\u00f6d\u00e9 name.txt": b"unicode and spaces\n",
    "plus+sign/100%.bin": bytes(range(256)) * 8,
    "nested/a/b/c.txt": b"deep\n",
    "empty.txt": b"",
}


def rclone_env(daemon: Any) -> dict[str, str]:
    """The environment for rclone: the remote as ``RCLONE_CONFIG_ARTIFACTD_*`` variables, and
    no ``AWS_*`` variables (``AWS_CA_BUNDLE`` makes the AWS SDK inside rclone replace rclone's
    HTTP transport, which rclone refuses)."""
    access, secret = daemon.credentials()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
    prefix = f"RCLONE_CONFIG_{REMOTE.upper()}_"
    env.update(
        {
            "HOME": daemon.workdir,
            "RCLONE_CONFIG": os.path.join(daemon.workdir, "rclone.conf"),
            prefix + "TYPE": "s3",
            prefix + "PROVIDER": "Other",
            prefix + "ENDPOINT": daemon.endpoint_url,
            prefix + "ACCESS_KEY_ID": access,
            prefix + "SECRET_ACCESS_KEY": secret,
            prefix + "REGION": "us-east-1",
            prefix + "FORCE_PATH_STYLE": "true",
        }
    )
    return env


class RcloneHTTPTests(DaemonTestCase):
    """rclone over plain HTTP."""

    def setUp(self) -> None:
        super().setUp()
        daemon = self.daemon
        config = os.path.join(daemon.workdir, "rclone.conf")
        if not os.path.exists(config):
            open(config, "w").close()  # an empty config: the remote comes from the environment
        self.env = rclone_env(daemon)
        self.s3 = daemon.client()
        self.local = self.mktemp()
        os.makedirs(self.local)

    # ------------------------------------------------------------- helpers
    def argv(self, *args: str) -> list[str]:
        tls = ["--ca-cert", self.daemon.cert_path] if self.daemon.cert_path else []
        return [RCLONE, *tls, "--retries", "1", "--low-level-retries", "1", *args]

    def rclone(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = run(self.argv(*args), self.env, check=check, timeout=300)
        if check:
            self.assertNotIn("ERROR", result.stderr)
        return result

    def remote(self, path: str) -> str:
        return f"{REMOTE}:{path}"

    def new_bucket(self) -> str:
        name = self.bucket_name()
        self.rclone("mkdir", self.remote(name))
        return name

    def keys(self, bucket: str) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [o["Key"] for p in pages for o in p.get("Contents", [])]

    def remote_tree(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        out = {}
        for key in self.keys(bucket):
            if key.startswith(prefix):
                body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                out[key[len(prefix) :]] = body
        return out

    def lsl(self, path: str) -> dict[str, tuple[int, str]]:
        """``rclone lsl``: name -> (size, modification time to the second)."""
        out = {}
        for line in self.rclone("lsl", self.remote(path)).stdout.splitlines():
            size, day, time, name = line.strip().split(" ", 3)
            out[name] = (int(size), f"{day} {time[:8]}")
        return out

    def local_tree(self, files: dict[str, bytes]) -> str:
        root = os.path.join(self.local, "src")
        write_tree(root, files)
        return root

    # ------------------------------------------------------------- buckets
    def test_mkdir_lsd(self) -> None:
        """``rclone mkdir`` creates the bucket; ``lsd`` lists buckets, then directories."""
        bucket = self.new_bucket()
        self.s3.head_bucket(Bucket=bucket)
        listed = [line.split()[-1] for line in self.rclone("lsd", f"{REMOTE}:").stdout.splitlines()]
        self.assertIn(bucket, listed)
        self.rclone("copy", self.local_tree(SMALL_TREE), self.remote(bucket))
        dirs = self.rclone("lsd", self.remote(bucket)).stdout.splitlines()
        self.assertEqual(
            sorted(line.split(None, 4)[-1] for line in dirs), ["nested", "plus+sign", "with space"]
        )
        self.rclone("mkdir", self.remote(bucket))  # an existing bucket of ours is fine

    # ----------------------------------------------------------- transfers
    def test_copy_defaults(self) -> None:
        """``rclone copy`` with its defaults uploads a tree (single PUTs below the 200 MiB cutoff,
        modification times in metadata); ``ls``/``lsl`` and ``check --download`` agree."""
        bucket = self.new_bucket()
        src = self.local_tree(SMALL_TREE)
        big = os.path.join(src, "big.bin")
        digest = random_file(big, 6 * MiB + 7)
        os.utime(big, (1_700_000_000, 1_700_000_000))
        self.rclone("copy", src, self.remote(f"{bucket}/dir"))
        expected = dict(SMALL_TREE)
        with open(big, "rb") as f:
            expected["big.bin"] = f.read()
        self.assertEqual(self.remote_tree(bucket, "dir/"), expected)
        head = self.s3.head_object(Bucket=bucket, Key="dir/big.bin")
        self.assertNotIn("-", head["ETag"])  # one PUT
        self.assertIn("mtime", head["Metadata"])
        listed = self.lsl(f"{bucket}/dir")
        self.assertEqual(
            {k: v[0] for k, v in listed.items()}, {k: len(v) for k, v in expected.items()}
        )
        self.assertEqual(listed["big.bin"][1], "2023-11-14 22:13:20")
        sizes = {
            line.strip().split(" ", 1)[1]: int(line.split()[0])
            for line in self.rclone("ls", self.remote(bucket)).stdout.splitlines()
        }
        self.assertEqual(sizes, {f"dir/{k}": len(v) for k, v in expected.items()})
        out = self.rclone("check", "--download", src, self.remote(f"{bucket}/dir"))
        self.assertIn("0 differences found", out.stderr)
        back = os.path.join(self.local, "back")
        self.rclone("copy", self.remote(f"{bucket}/dir"), back)
        self.assertEqual(tree(back), expected)
        self.assertEqual(file_sha256(os.path.join(back, "big.bin")), digest)

    def test_copy_multipart(self) -> None:
        """With ``--s3-upload-cutoff 5M --s3-chunk-size 5M`` a 12 MiB file goes up as a 3-part
        multipart upload; its MD5 (kept in metadata) and its bytes check out."""
        bucket = self.new_bucket()
        src = self.local_tree({"small.txt": b"small\n"})
        digest = random_file(os.path.join(src, "large.bin"), 12 * MiB)
        self.rclone(
            "copy", "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M", src, self.remote(bucket)
        )
        head = self.s3.head_object(Bucket=bucket, Key="large.bin")
        self.assertTrue(head["ETag"].endswith('-3"'), head["ETag"])
        self.assertEqual(head["ContentLength"], 12 * MiB)
        self.assertIn("md5chksum", head["Metadata"])
        out = self.rclone("check", "--download", src, self.remote(bucket))
        self.assertIn("0 differences found", out.stderr)
        out = self.rclone("check", src, self.remote(bucket))  # by MD5 from the metadata
        self.assertIn("0 differences found", out.stderr)
        got = os.path.join(self.local, "got.bin")
        self.rclone("copyto", self.remote(f"{bucket}/large.bin"), got)
        self.assertEqual(file_sha256(got), digest)

    def test_cat_ranges(self) -> None:
        """``rclone cat --offset/--count`` reads byte ranges of an object."""
        bucket = self.new_bucket()
        data = bytes(range(256)) * 64
        src = self.local_tree({"r.bin": data})
        self.rclone("copy", src, self.remote(bucket))
        target = self.remote(f"{bucket}/r.bin")
        for offset, count in [(0, 10), (100, 1000), (16000, 1000), (5, -1)]:
            argv = ["cat", "--offset", str(offset)]
            if count >= 0:
                argv += ["--count", str(count)]
            proc = subprocess.run(
                self.argv(*argv, target), env=self.env, capture_output=True, timeout=60, check=True
            )
            end = len(data) if count < 0 else offset + count
            self.assertEqual(proc.stdout, data[offset:end], (offset, count))

    def test_sync_with_deletions(self) -> None:
        """``rclone sync`` makes the bucket equal to the local tree: new, changed and deleted
        files; ``check --download`` then finds no difference."""
        bucket = self.new_bucket()
        src = self.local_tree(SMALL_TREE)
        self.rclone("sync", src, self.remote(bucket))
        self.assertEqual(self.remote_tree(bucket), SMALL_TREE)
        os.remove(os.path.join(src, "readme.txt"))
        shutil.rmtree(os.path.join(src, "nested"))
        changed = {
            "with space/\u00fcn\u00efc\u00f6d\u00e9 name.txt": b"changed, and longer than before\n",
            "new/file.txt": b"new\n",
        }
        write_tree(src, changed)
        self.rclone("sync", src, self.remote(bucket))
        expected = tree(src)
        self.assertEqual(self.remote_tree(bucket), expected)
        self.assertNotIn("readme.txt", self.keys(bucket))
        out = self.rclone("check", "--download", src, self.remote(bucket))
        self.assertIn("0 differences found", out.stderr)
        out = self.rclone("sync", "-v", src, self.remote(bucket))  # nothing left to do
        self.assertNotIn("Copied", out.stderr)
        self.assertNotIn("Deleted", out.stderr)

    def test_check_download_finds_differences(self) -> None:
        """``check --download`` compares contents: an object changed behind rclone's back (same
        size) is reported and the command fails."""
        bucket = self.new_bucket()
        src = self.local_tree({"a.txt": b"aaaa", "b.txt": b"bbbb"})
        self.rclone("copy", src, self.remote(bucket))
        self.s3.put_object(Bucket=bucket, Key="b.txt", Body=b"BBBB")
        differ = os.path.join(self.local, "differ")
        argv = ["check", "--download", "--differ", differ, src, self.remote(bucket)]
        out = self.rclone(*argv, check=False)
        self.assertEqual(out.returncode, 1, out.stderr)
        self.assertIn("1 differences found", out.stderr)
        with open(differ, encoding="utf-8") as f:
            self.assertEqual(f.read().splitlines(), ["b.txt"])

    def test_delete_purge(self) -> None:
        """``rclone delete`` removes the matching objects only; ``purge`` removes the rest and
        the bucket."""
        bucket = self.new_bucket()
        self.rclone("copy", self.local_tree(SMALL_TREE), self.remote(bucket))
        self.rclone("delete", "--include", "*.txt", self.remote(bucket))
        self.assertEqual(self.keys(bucket), ["plus+sign/100%.bin"])
        self.rclone("purge", self.remote(bucket))
        e = self.assertRaises(ClientError, self.s3.head_bucket, Bucket=bucket)
        self.assertEqual(e.response["Error"]["Code"], "404")

    def test_missing_bucket(self) -> None:
        """Listing a missing bucket is reported as "directory not found" (a 404 NoSuchBucket),
        not as a server error."""
        out = self.rclone("ls", self.remote(self.bucket_name()), check=False)
        self.assertEqual(out.returncode, 3, out.stderr)  # rclone's "directory not found" status
        self.assertIn("directory not found", out.stderr)

    def test_sync_updates_modification_time(self) -> None:
        """A file whose modification time alone changed is updated in place (rclone sends a
        CopyObject onto itself with new metadata)."""
        bucket = self.new_bucket()
        src = self.local_tree({"t.txt": b"same bytes\n"})
        self.rclone("sync", src, self.remote(bucket))
        os.utime(os.path.join(src, "t.txt"), (1_600_000_000, 1_600_000_000))
        self.rclone("sync", src, self.remote(bucket))
        self.assertEqual(self.lsl(bucket)["t.txt"][1], "2020-09-13 12:26:40")

    def test_server_side_copy_and_move(self) -> None:
        """``rclone copyto`` between remote paths copies on the server (CopyObject; above
        ``--s3-copy-cutoff`` a multipart copy with UploadPartCopy), keeping rclone's metadata;
        ``rclone move`` copies and deletes."""
        bucket = self.new_bucket()
        src = self.local_tree({"a.bin": b"a" * 1000})
        digest = random_file(os.path.join(src, "big.bin"), 12 * MiB)
        cutoffs = ["--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M", "--s3-copy-cutoff", "5M"]
        self.rclone("copy", *cutoffs, src, self.remote(bucket))
        for name in ("a.bin", "big.bin"):
            target = self.remote(f"{bucket}/copies/{name}")
            self.rclone("copyto", *cutoffs, self.remote(f"{bucket}/{name}"), target)
        head = self.s3.head_object(Bucket=bucket, Key="copies/big.bin")
        self.assertTrue(head["ETag"].endswith('-3"'), head["ETag"])  # three UploadPartCopy parts
        self.assertIn("mtime", head["Metadata"])
        listed = self.lsl(bucket)
        self.assertEqual(listed["copies/big.bin"], listed["big.bin"])
        self.assertEqual(listed["copies/a.bin"], listed["a.bin"])
        got = os.path.join(self.local, "copy.bin")
        self.rclone("copyto", self.remote(f"{bucket}/copies/big.bin"), got)
        self.assertEqual(file_sha256(got), digest)
        out = self.rclone("check", "--download", src, self.remote(f"{bucket}/copies"))
        self.assertIn("0 differences found", out.stderr)
        self.rclone("move", self.remote(f"{bucket}/copies"), self.remote(f"{bucket}/moved"))
        self.assertEqual(
            sorted(self.keys(bucket)), ["a.bin", "big.bin", "moved/a.bin", "moved/big.bin"]
        )
        self.assertEqual(self.remote_tree(bucket, "moved/")["a.bin"], b"a" * 1000)


class RcloneTLSTests(RcloneHTTPTests):
    """rclone over TLS, trusting the daemon's certificate with ``--ca-cert``."""

    tls = True
