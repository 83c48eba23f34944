"""Receipt PDFs in the private receipts bucket, served by short-lived presigned URLs.

Key: ``receipts/{account}/{customer}/{payment}.pdf``. The object's metadata holds the
fingerprint of the receipt's content, so a changed payment (a refund) is noticed and
the PDF built again; the bucket is versioned, so the older file is kept for a while.

The S3 client is created on first use and cached; it follows ``AWS_ENDPOINT_URL_S3``
(moto in development and tests), and so do the presigned URLs it makes.
"""
from __future__ import annotations

from chalicelib.observability import logger

_client = None

FINGERPRINT_KEY = "fingerprint"


class BlobUnavailable(Exception):
    """S3 did not answer as expected (unreachable, throttled, denied)."""


def client():
    global _client
    if _client is None:
        import boto3
        from botocore.config import Config

        from chalicelib.settings import get_settings

        _client = boto3.client("s3", region_name=get_settings().region, config=Config(
            signature_version="s3v4", connect_timeout=3, read_timeout=10,
            retries={"max_attempts": 2, "mode": "standard"}))
    return _client


def set_client(new_client) -> None:
    """Replace the cached client (tests: a failing one)."""
    global _client
    _client = new_client


def receipt_key(account_id: str, customer_id: str, payment_id: str) -> str:
    return f"receipts/{account_id}/{customer_id}/{payment_id}.pdf"


# HeadObject's answers for a key that holds no object: 404 with s3:ListBucket on the bucket,
# 403 without it ("If you don't have the s3:ListBucket permission, Amazon S3 returns an
# HTTP status code 403 Forbidden error", S3 API reference, HeadObject). A HEAD answer has
# no body, so botocore names the error after the status ("404", "403").
_ABSENT_CODES = {"404", "NoSuchKey", "NotFound"}
_DENIED_CODES = {"403", "AccessDenied", "Forbidden"}


def stored_fingerprint(bucket: str, key: str) -> str | None:
    """The fingerprint of the stored PDF, or None if there is none.

    A 403 counts as "none": the deployed role has s3:ListBucket (so a missing key is a
    404), but should the grant be missing, a 403 for a receipt never built would otherwise
    answer 503 on every request. Taken as absent, the PDF is built and put; if the role
    really lacks access, that PutObject (or the download) fails and says so.
    """
    from botocore.exceptions import ClientError

    try:
        head = client().head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = str(exc.response.get("Error", {}).get("Code"))
        if status == 404 or code in _ABSENT_CODES:
            return None
        if status == 403 or code in _DENIED_CODES:
            logger.warning("receipt HeadObject denied: taken as not stored yet "
                           "(is s3:ListBucket granted on the bucket?)", extra={"key": key})
            return None
        raise BlobUnavailable(str(exc)) from exc
    except Exception as exc:
        raise BlobUnavailable(type(exc).__name__) from exc
    return (head.get("Metadata") or {}).get(FINGERPRINT_KEY)


def put_pdf(bucket: str, key: str, body: bytes, fingerprint: str) -> None:
    try:
        client().put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/pdf",
                            Metadata={FINGERPRINT_KEY: fingerprint})
    except Exception as exc:
        raise BlobUnavailable(type(exc).__name__) from exc


def presigned_download(bucket: str, key: str, filename: str, seconds: int) -> str:
    """A GET URL for ``seconds``, answered as an attachment named ``filename`` (ASCII)."""
    try:
        return client().generate_presigned_url("get_object", ExpiresIn=seconds, Params={
            "Bucket": bucket, "Key": key, "ResponseContentType": "application/pdf",
            "ResponseContentDisposition": f'attachment; filename="{filename}"',
            "ResponseCacheControl": "private, no-store"})
    except Exception as exc:
        raise BlobUnavailable(type(exc).__name__) from exc
