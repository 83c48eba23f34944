"""Customers CSV exports: the export item that tracks one, and the file, streamed into the
receipts bucket by S3 multipart upload.

Item: ``ACCT#<acct>#EXPORTS`` / ``<export id>`` (ids are ULIDs: a descending Query lists
the newest first). Its status goes queued → running → ready (or failed; a failed or a
stalled running export is started again by the queue's next delivery). ``lease_until``
(epoch seconds) keeps a second delivery of the same message from running the export
while the first one still may. TTL: ``export_retention_days`` (7 by default), as the
bucket's lifecycle rule expires the files under ``exports/`` (infra/template.yaml).

File: ``exports/<account>/<export id>.csv``. ``CsvUpload`` sends a part whenever its
buffer holds ``PART_SIZE`` bytes (S3's minimum for every part but the last is 5 MiB), so
memory stays bounded by one part whatever the number of rows.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime

from pynamodb.exceptions import DoesNotExist, UpdateError

from chalicelib.settings import get_settings
from chalicelib.store import keys, receipts_blob
from chalicelib.store.table import ExportItem

PREFIX = "exports/"
PART_SIZE = 8 * 1024 * 1024
S3_MIN_PART = 5 * 1024 * 1024
QUEUED, RUNNING, READY, FAILED = "queued", "running", "ready", "failed"


class ExportUnavailable(Exception):
    """The bucket could not be written or read."""


@dataclass(frozen=True)
class Export:
    account_id: str
    export_id: str
    status: str
    created_at: str
    updated_at: str
    created_by: str
    created_by_email: str | None
    rows: int
    truncated: bool
    s3_key: str | None
    attempts: int
    error: str | None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def object_key(account_id: str, export_id: str) -> str:
    return f"{PREFIX}{account_id}/{export_id}.csv"


def _export(item: ExportItem) -> Export:
    return Export(account_id=item.account_id, export_id=item.export_id, status=item.status,
                  created_at=item.created_at, updated_at=item.updated_at,
                  created_by=item.created_by, created_by_email=item.created_by_email,
                  rows=int(item.rows or 0), truncated=bool(item.truncated),
                  s3_key=item.s3_key, attempts=int(item.attempts or 0), error=item.error)


def create(account_id: str, export_id: str, created_by: str, created_by_email: str | None,
           at: str, expires_at: int) -> Export:
    item = ExportItem(keys.exports_pk(account_id), export_id, account_id=account_id,
                      export_id=export_id, status=QUEUED, created_at=at, updated_at=at,
                      created_by=created_by, created_by_email=created_by_email, rows=0,
                      truncated=0, attempts=0, lease_until=0,
                      ttl=datetime.fromtimestamp(expires_at, UTC))
    item.save(condition=ExportItem.PK.does_not_exist())
    return _export(item)


def get(account_id: str, export_id: str) -> Export | None:
    try:
        return _export(ExportItem.get(keys.exports_pk(account_id), export_id,
                                      consistent_read=True))
    except DoesNotExist:
        return None


def list_recent(account_id: str, limit: int) -> list[Export]:
    return [_export(i) for i in ExportItem.query(
        keys.exports_pk(account_id), scan_index_forward=False, limit=limit)]


def start(account_id: str, export_id: str, at: str, now: int, lease_seconds: int) -> bool:
    """Mark the export running (one more attempt) unless it is ready, or another run holds
    its lease; whether this run may go on."""
    item = ExportItem(keys.exports_pk(account_id), export_id)
    try:
        item.update(actions=[ExportItem.status.set(RUNNING), ExportItem.updated_at.set(at),
                             ExportItem.attempts.add(1), ExportItem.error.remove(),
                             ExportItem.lease_until.set(now + lease_seconds)],
                    condition=ExportItem.PK.exists()
                    & (ExportItem.status.is_in(QUEUED, FAILED)
                       | ((ExportItem.status == RUNNING) & (ExportItem.lease_until < now))))
    except UpdateError as exc:
        if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
            return False
        raise
    return True


def finish(account_id: str, export_id: str, at: str, rows: int, truncated: bool,
           s3_key: str) -> None:
    ExportItem(keys.exports_pk(account_id), export_id).update(
        actions=[ExportItem.status.set(READY), ExportItem.updated_at.set(at),
                 ExportItem.rows.set(rows), ExportItem.truncated.set(1 if truncated else 0),
                 ExportItem.s3_key.set(s3_key), ExportItem.lease_until.set(0)],
        condition=ExportItem.PK.exists())


def fail(account_id: str, export_id: str, at: str, error: str) -> None:
    """Record a failed run (the queue delivers the message again, up to its limit)."""
    ExportItem(keys.exports_pk(account_id), export_id).update(
        actions=[ExportItem.status.set(FAILED), ExportItem.updated_at.set(at),
                 ExportItem.error.set(error[:200]), ExportItem.lease_until.set(0)],
        condition=ExportItem.PK.exists() & (ExportItem.status != READY))


# --- the file ---------------------------------------------------------------------------

class CsvUpload:
    """One CSV file written to S3 by multipart upload, a part at a time."""

    def __init__(self, key: str, filename: str, part_size: int = PART_SIZE):
        if part_size < S3_MIN_PART:
            raise ValueError("S3 needs parts of at least 5 MiB (all but the last)")
        self.bucket = get_settings().receipts_bucket
        self.key = key
        self.part_size = part_size
        self._buffer = bytearray()
        self._parts: list[dict] = []
        self.bytes_written = 0
        try:
            self._upload_id = receipts_blob.client().create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType="text/csv; charset=utf-8",
                ContentDisposition=f'attachment; filename="{filename}"')["UploadId"]
        except Exception as exc:
            raise ExportUnavailable(type(exc).__name__) from exc

    def write(self, data: bytes) -> None:
        self._buffer += data
        self.bytes_written += len(data)
        if len(self._buffer) >= self.part_size:
            self._send_part()

    def _send_part(self) -> None:
        number = len(self._parts) + 1
        try:
            answer = receipts_blob.client().upload_part(
                Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number,
                Body=bytes(self._buffer))
        except Exception as exc:
            raise ExportUnavailable(type(exc).__name__) from exc
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        self._buffer = bytearray()

    def complete(self) -> None:
        if self._buffer or not self._parts:
            self._send_part()
        try:
            receipts_blob.client().complete_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts})
        except Exception as exc:
            raise ExportUnavailable(type(exc).__name__) from exc

    def abort(self) -> None:
        """Drop the parts sent (best effort: the bucket's lifecycle rule aborts
        incomplete uploads after 7 days anyway)."""
        # The failure being handled is the one to report.
        with contextlib.suppress(Exception):
            receipts_blob.client().abort_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)


def presigned_download(key: str, filename: str, seconds: int) -> str:
    try:
        return receipts_blob.client().generate_presigned_url("get_object", ExpiresIn=seconds,
                                                             Params={
            "Bucket": get_settings().receipts_bucket, "Key": key,
            "ResponseContentType": "text/csv; charset=utf-8",
            "ResponseContentDisposition": f'attachment; filename="{filename}"',
            "ResponseCacheControl": "private, no-store"})
    except Exception as exc:
        raise ExportUnavailable(type(exc).__name__) from exc

