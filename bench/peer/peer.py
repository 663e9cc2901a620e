#!/usr/bin/env python3
"""The Python/boto3 peer of two functions, for `cargo xtask bench --peer`.

The same work as the Rust `delete-upload` and `cleanup` on the same items
of the same table, with the same AWS calls, so that the bench compares the
two runtimes and not two designs:

- delete: one consistent `BatchGetItem` (API key and session), the
  owner-conditioned `TransactWriteItems` (session removed, usage released,
  cleanup task written), one `SendMessage`; 200 with the contract's body.
- cleanup: one `BatchGetItem` of the batch's tasks, one `DeleteObjects` of
  their keys; only failed messages reported.

It runs as a Lambda function does, through the Runtime API
(`AWS_LAMBDA_RUNTIME_API`), boto3 clients made at init. The bench starts it
with the function's environment and `PEER_HANDLER` set to `delete` or
`cleanup`. Edge cases the bench does not drive (retries of a conflicting
transaction, multipart aborts, the final pass) are left out: they cost
nothing on the measured path.
"""

import datetime
import hashlib
import json
import os
import sys
import urllib.request

import boto3
from botocore.config import Config

RUNTIME = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"
TABLE = os.environ["TABLE_NAME"]
BUCKET = os.environ["BUCKET_NAME"]
QUEUE_URL = os.environ["CLEANUP_QUEUE_URL"]
URL_TTL = int(os.environ.get("PRESIGNED_URL_TTL_SECONDS", "900"))
FINAL_PASS_MARGIN = 60
DUE_SHARDS = 32

_config = Config(retries={"mode": "standard"})
dynamodb = boto3.client("dynamodb", config=_config)
_path_style = os.environ.get("S3_FORCE_PATH_STYLE") == "true"
s3 = boto3.client("s3", config=_config.merge(Config(s3={"addressing_style": "path"})) if _path_style else _config)
sqs = boto3.client("sqs", config=_config)


def log(level, message, **fields):
    record = {"timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(), "level": level,
              "message": message}
    record.update(fields)
    print(json.dumps(record), flush=True)


def rfc3339(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000)


def reply(status, body):
    return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}


def header(event, name):
    for k, v in (event.get("headers") or {}).items():
        if k.lower() == name:
            return v
    return None


def delete(event):
    key = header(event, "x-api-key")
    if not key:
        return reply(401, {"error": "Missing or invalid API key"})
    upload_id = (event.get("pathParameters") or {}).get("upload_id") or header(event, "x-upload-id")
    if not upload_id or not upload_id.startswith("upl_") or len(upload_id) != 36:
        return reply(400, {"error": "Invalid upload id"})
    digest = hashlib.sha256(key.encode()).hexdigest()
    key_pk, session_pk = "APIKEY#" + digest, "UPLOAD#" + upload_id
    got = dynamodb.batch_get_item(RequestItems={TABLE: {"ConsistentRead": True, "Keys": [
        {"pk": {"S": key_pk}, "sk": {"S": "APIKEY"}},
        {"pk": {"S": session_pk}, "sk": {"S": "SESSION"}},
    ]}})
    items = {i["pk"]["S"]: i for i in got["Responses"].get(TABLE, [])}
    if key_pk not in items:
        return reply(401, {"error": "Missing or invalid API key"})
    owner = items[key_pk]["owner"]["S"]
    session = items.get(session_pk)
    if session is None or session["owner"]["S"] != owner:
        return reply(404, {"error": "Upload not found"})
    size = session["size"]["N"]
    now = datetime.datetime.now(datetime.timezone.utc)
    final_pass_at = now + datetime.timedelta(seconds=URL_TTL + FINAL_PASS_MARGIN)
    if session["status"]["S"] == "completed":
        release = ("ADD bytes_used :minus, bytes_held :minus", "bytes_used >= :size", {})
    else:
        release = ("ADD bytes_reserved :minus, bytes_held :minus, pending_count :minus_one",
                   "bytes_reserved >= :size", {":minus_one": {"N": "-1"}})
    task = {
        "pk": {"S": "CLEANUP#" + upload_id}, "sk": {"S": "CLEANUP"}, "type": {"S": "cleanup"},
        "upload_id": {"S": upload_id}, "owner": {"S": owner}, "bucket": {"S": BUCKET},
        "object_key": session["object_key"], "created_at": {"S": rfc3339(now)},
        "final_pass_at": {"S": rfc3339(final_pass_at)}, "attempts": {"N": "0"},
        "gsi2pk": {"S": "DUE#CLEANUP#%02d" % (int(upload_id[4:6], 16) % DUE_SHARDS)},
        "gsi2sk": {"S": rfc3339(final_pass_at) + "#" + upload_id},
    }
    if "mp_upload_id" in session:
        task["mp_upload_id"] = session["mp_upload_id"]
    dynamodb.transact_write_items(TransactItems=[
        {"Delete": {"TableName": TABLE, "Key": {"pk": {"S": session_pk}, "sk": {"S": "SESSION"}},
                    "ConditionExpression": "#owner = :owner AND #version = :version",
                    "ExpressionAttributeNames": {"#owner": "owner", "#version": "version"},
                    "ExpressionAttributeValues": {":owner": {"S": owner}, ":version": session["version"]},
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}},
        {"Update": {"TableName": TABLE, "Key": {"pk": {"S": "OWNER#" + owner}, "sk": {"S": "USAGE"}},
                    "UpdateExpression": release[0], "ConditionExpression": release[1],
                    "ExpressionAttributeValues": {":minus": {"N": "-" + size}, ":size": {"N": size}, **release[2]}}},
        {"Put": {"TableName": TABLE, "Item": task, "ConditionExpression": "attribute_not_exists(pk)"}},
    ])
    try:
        sqs.send_message(QueueUrl=QUEUE_URL, MessageBody=json.dumps({"upload_id": upload_id}))
    except Exception as e:  # the durable task stays for the sweeper
        log("WARN", "cleanup enqueue failed", error=str(e), upload_id=upload_id)
    log("INFO", "deleted", upload_id=upload_id, owner=owner)
    return reply(200, {"message": "Upload %s deleted successfully" % upload_id})


def cleanup(event):
    records = event.get("Records") or []
    failures, ids = [], {}
    for r in records:
        try:
            ids[r["messageId"]] = json.loads(r["body"])["upload_id"]
        except (KeyError, ValueError, TypeError):
            failures.append(r.get("messageId"))
    tasks = {}
    wanted = sorted(set(ids.values()))
    for i in range(0, len(wanted), 100):
        keys = [{"pk": {"S": "CLEANUP#" + u}, "sk": {"S": "CLEANUP"}} for u in wanted[i:i + 100]]
        request = {TABLE: {"ConsistentRead": True, "Keys": keys}}
        while request:
            got = dynamodb.batch_get_item(RequestItems=request)
            for item in got["Responses"].get(TABLE, []):
                tasks[item["upload_id"]["S"]] = item
            request = got.get("UnprocessedKeys") or None
    by_bucket = {}
    for u, task in tasks.items():
        by_bucket.setdefault(task["bucket"]["S"], set()).add(task["object_key"]["S"])
    refused = set()
    for bucket, keys in by_bucket.items():
        keys = sorted(keys)
        for i in range(0, len(keys), 1000):
            out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]],
                                                           "Quiet": True})
            refused.update(e["Key"] for e in out.get("Errors", []))
    for message_id, u in ids.items():
        task = tasks.get(u)
        if task is not None and task["object_key"]["S"] in refused:
            failures.append(message_id)
        else:
            log("INFO", "cleanup done", message_id=message_id, upload_id=u)
    return {"batchItemFailures": [{"itemIdentifier": m} for m in failures]}


HANDLERS = {"delete": delete, "cleanup": cleanup}


def main():
    handler = HANDLERS[os.environ["PEER_HANDLER"]]
    while True:
        with urllib.request.urlopen(RUNTIME + "/invocation/next") as r:
            request_id = r.headers["Lambda-Runtime-Aws-Request-Id"]
            event = json.loads(r.read())
        try:
            result, path = handler(event), "/response"
        except Exception as e:
            result, path = {"errorType": type(e).__name__, "errorMessage": str(e)}, "/error"
        body = json.dumps(result).encode()
        urllib.request.urlopen(urllib.request.Request(RUNTIME + "/invocation/" + request_id + path, data=body,
                                                      method="POST")).read()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
