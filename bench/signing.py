"""SigV4 as a real client does it: presigned request targets from botocore, and what signing
costs a pure-Python client on one core."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

REGION = "us-east-1"
EXPIRES = 6 * 3600  # presigned targets stay valid for the whole run


class Signer:
    """Presigns S3 requests for one endpoint and key pair with botocore (SigV4, path style).

    ``target`` returns what goes on the request line (path and query).  The same targets are sent
    to moto, which ignores the signature; nginx gets the plain path."""

    def __init__(self, endpoint_url: str, access_key: str, secret_key: str) -> None:
        import boto3
        from botocore.config import Config

        self.endpoint_url = endpoint_url
        self.access_key = access_key
        self.secret_key = secret_key
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name=REGION,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def target(self, operation: str, **params: Any) -> str:
        url = urlsplit(
            self.client.generate_presigned_url(operation, Params=params, ExpiresIn=EXPIRES)
        )
        return f"{url.path}?{url.query}"

    def curl_args(self) -> list[str]:
        """curl's own SigV4 signing (curl 7.88 needs the payload hash header given)."""
        return [
            "--aws-sigv4",
            f"aws:amz:{REGION}:s3",
            "--user",
            f"{self.access_key}:{self.secret_key}",
            "-H",
            "x-amz-content-sha256: UNSIGNED-PAYLOAD",
        ]


def signing_cost(signer: Signer, seconds: float = 1.0) -> dict[str, float]:
    """How many presigned URLs and how many header signatures (``Authorization``) botocore makes
    per second on one core: the ceiling of a pure-Python client that signs every request."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    def rate(action: Any) -> float:
        count = 0
        started = time.perf_counter()
        cpu0 = time.process_time()
        while time.perf_counter() - started < seconds:
            action(count)
            count += 1
        return count / (time.process_time() - cpu0)

    def presign(n: int) -> None:
        signer.client.generate_presigned_url(
            "get_object", Params={"Bucket": "sign-cost", "Key": f"k/{n:07d}"}, ExpiresIn=EXPIRES
        )

    auth = S3SigV4Auth(Credentials(signer.access_key, signer.secret_key), "s3", REGION)

    def header_sign(n: int) -> None:
        request = AWSRequest(
            method="GET",
            url=f"{signer.endpoint_url}/sign-cost/k/{n:07d}",
            headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"},
        )
        auth.add_auth(request)

    return {
        "presigned_urls_per_cpu_s": rate(presign),
        "header_signatures_per_cpu_s": rate(header_sign),
    }
