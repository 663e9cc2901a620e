"""moto server with one request at a time, and a log of who called what.

DynamoDB runs every request, and every TransactWriteItems, atomically and in
isolation. moto's threaded server does not: a transaction that fails restores
a snapshot of the whole table taken when it started, undoing what other
requests wrote meanwhile, and a snapshot can catch another transaction half
applied. Serving requests one at a time gives back the atomicity the service
is built on; the interleaving of the functions' own requests is untouched.

Long polling (ReceiveMessage with WaitTimeSeconds > 0) would hold the lock,
so the local tooling polls with WaitTimeSeconds=0.

With --call-log FILE, every request is also written to FILE as one JSON line
{"principal", "service", "operation", "resource", "status", "ms",
"waited_ms"}: the access key
id that signed it (header or presigned query), which the local stack sets to
the calling function's logical id, so `cargo xtask test` can check each
function's IAM policy against the calls it really made. A TransactWriteItems
is logged as one line per item action (PutItem, UpdateItem, DeleteItem,
ConditionCheckItem), as IAM authorizes it; a PutEvents as one line per
entry, its resource the event bus's name.

A cancelled TransactWriteItems is undone item by item (below), not by
moto's copies of every table it touches, which made each transaction slower
than the last as tables and their streams grew.
"""

import argparse
import copy
import io
import json
import re
import threading
import time
from urllib.parse import parse_qs, unquote

from werkzeug.serving import run_simple
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

# A TransactWriteItems is undone item by item, not by whole-table copies.
# moto deep-copies a touched table once per item that names it, before the
# transaction, to put it back if the transaction is cancelled: a four-item
# transaction on a table of a few thousand items took seconds, and over a
# test run (tables grow, and keep an empty entry for each deleted item) a
# single transaction reached 9 s, past a function's timeout. Here the items
# the transaction names are copied instead (with the length of their table's
# stream), moto's own table copy is made a no-op for the call, and a
# cancelled transaction puts those items (and the streams) back as they were.
# Requests are served one at a time (below), so nothing else runs meanwhile.
_transact_write_items = DynamoDBBackend.transact_write_items


def _same_table(self, memo):
    return self


def _journal(backend, transact_items):
    journal, streams = [], {}
    for entry in transact_items:
        try:
            op_type, op = next(iter(entry.items()))
            table = backend.tables[op["TableName"]]
            attrs = op["Item"] if op_type == "Put" else op["Key"]
            h = DynamoType(attrs[table.hash_key_attr])
            r = DynamoType(attrs[table.range_key_attr]) if table.range_key_attr else None
        except Exception:
            # A malformed entry: moto refuses it before writing it.
            continue
        current = table.items.get(h, {}).get(r) if r is not None else table.items.get(h)
        journal.append((table, h, r, copy.deepcopy(current)))
        if table.stream_shard is not None and id(table) not in streams:
            streams[id(table)] = (table.stream_shard, len(table.stream_shard.items))
    return journal, streams


def _transact_by_items(self, transact_items):
    journal, streams = _journal(self, transact_items)
    own = Table.__dict__.get("__deepcopy__")
    Table.__deepcopy__ = _same_table
    try:
        return _transact_write_items(self, transact_items)
    except Exception:
        for table, h, r, before in reversed(journal):
            if r is not None:
                if before is None:
                    table.items.get(h, {}).pop(r, None)
                else:
                    table.items[h][r] = before
            elif before is None:
                table.items.pop(h, None)
            else:
                table.items[h] = before
        for shard, length in streams.values():
            del shard.items[length:]
        raise
    finally:
        if own is None:
            del Table.__deepcopy__
        else:
            Table.__deepcopy__ = own


DynamoDBBackend.transact_write_items = _transact_by_items

CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


def principal(environ, query):
    auth = environ.get("HTTP_AUTHORIZATION", "")
    m = CREDENTIAL.search(auth)
    if m:
        return m.group(1)
    cred = query.get("X-Amz-Credential", [""])[0]
    return unquote(cred).split("/", 1)[0] if cred else ""


def s3_operation(method, path, query):
    parts = path.lstrip("/").split("/", 1)
    bucket = parts[0]
    key = parts[1] if len(parts) > 1 else ""
    resource = f"{bucket}/{unquote(key)}" if key else bucket
    q = set(query)
    if method == "HEAD":
        return ("HeadObject" if key else "HeadBucket"), resource
    if "tagging" in q:
        return {"GET": "GetObjectTagging", "PUT": "PutObjectTagging", "DELETE": "DeleteObjectTagging"}.get(method, method), resource
    if "uploadId" in q:
        if "partNumber" in q and method == "PUT":
            return "UploadPart", resource
        return {"GET": "ListParts", "POST": "CompleteMultipartUpload", "DELETE": "AbortMultipartUpload"}.get(method, method), resource
    if "uploads" in q:
        return ("CreateMultipartUpload" if method == "POST" else "ListMultipartUploads"), resource
    if "delete" in q and method == "POST":
        return "DeleteObjects", resource
    if not key:
        return {"GET": "ListObjects", "PUT": "CreateBucket", "DELETE": "DeleteBucket"}.get(method, method), resource
    return {"GET": "GetObject", "PUT": "PutObject", "DELETE": "DeleteObject"}.get(method, method), resource


def calls(environ, body):
    """(service, operation, resource) of each action the request performs."""
    method = environ["REQUEST_METHOD"]
    path = environ.get("PATH_INFO", "")
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target.startswith("DynamoDB_"):
        op = target.split(".", 1)[1]
        try:
            doc = json.loads(body or b"{}")
        except ValueError:
            doc = {}
        if op == "TransactWriteItems":
            out = []
            for item in doc.get("TransactItems", []):
                for kind, action in (("Put", "PutItem"), ("Update", "UpdateItem"), ("Delete", "DeleteItem"), ("ConditionCheck", "ConditionCheckItem")):
                    if kind in item:
                        out.append(("dynamodb", action, item[kind].get("TableName", "")))
            return out
        if op in ("BatchGetItem", "BatchWriteItem"):
            action = "BatchGetItem" if op == "BatchGetItem" else "BatchWriteItem"
            return [("dynamodb", action, t) for t in doc.get("RequestItems", {})]
        table = doc.get("TableName", "")
        if doc.get("IndexName"):
            table = f"{table}/index/{doc['IndexName']}"
        return [("dynamodb", op, table)]
    if target.startswith("AmazonSQS."):
        try:
            doc = json.loads(body or b"{}")
        except ValueError:
            doc = {}
        return [("sqs", target.split(".", 1)[1], doc.get("QueueUrl", "").rsplit("/", 1)[-1])]
    if target.startswith("AWSEvents."):
        try:
            doc = json.loads(body or b"{}")
        except ValueError:
            doc = {}
        op = target.split(".", 1)[1]
        if op == "PutEvents":
            buses = [e.get("EventBusName") or "default" for e in doc.get("Entries", [])]
            return [("events", op, b.rsplit("event-bus/", 1)[-1]) for b in buses]
        return [("events", op, doc.get("Name") or doc.get("EventBusName") or "")]
    if target.startswith("DynamoDBStreams_"):
        try:
            doc = json.loads(body or b"{}")
        except ValueError:
            doc = {}
        return [("dynamodb", target.split(".", 1)[1], doc.get("StreamArn", ""))]
    if path.startswith("/moto-api"):
        return []
    if method == "OPTIONS":
        # A browser's CORS preflight: it carries the presigned URL's query
        # (so its credential) but is no S3 action, and IAM authorizes none.
        return []
    op, resource = s3_operation(method, path, query)
    out = [("s3", op, resource)]
    if op in ("PutObject", "CreateMultipartUpload") and environ.get("HTTP_X_AMZ_TAGGING"):
        # Tags set with the write need s3:PutObjectTagging too.
        out.append(("s3", "PutObjectTagging", resource))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--call-log")
    args = parser.parse_args()

    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()
    log = open(args.call_log, "a", buffering=1) if args.call_log else None

    def serial(environ, start_response):
        arrived = time.monotonic()
        with lock:
            started = time.monotonic()
            if log is None:
                # Materialise the body inside the lock: the request is done
                # when the lock is released.
                return list(app(environ, start_response))
            body = b""
            if environ.get("HTTP_X_AMZ_TARGET"):
                # JSON protocols (DynamoDB, SQS) always send a length; S3
                # bodies (which may be chunked) are left alone.
                length = int(environ.get("CONTENT_LENGTH") or 0)
                body = environ["wsgi.input"].read(length) if length else b""
                environ["wsgi.input"] = io.BytesIO(body)
            status = []

            def record_status(s, headers, exc_info=None):
                status.append(s)
                return start_response(s, headers, exc_info)

            out = list(app(environ, record_status))
            query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
            who = principal(environ, query)
            code = int(status[0].split()[0]) if status else 0
            timing = {"ms": round((time.monotonic() - started) * 1000), "waited_ms": round((started - arrived) * 1000)}
            for service, op, resource in calls(environ, body):
                line = {"principal": who, "service": service, "operation": op, "resource": resource, "status": code}
                log.write(json.dumps({**line, **timing}) + "\n")
            return out

    run_simple(args.host, args.port, serial, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
