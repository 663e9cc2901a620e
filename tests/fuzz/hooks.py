"""Schemathesis hooks for the contract fuzz run (`tests/tests/fuzz.rs`).

Loaded through `SCHEMATHESIS_HOOKS`. They do five things, and excuse
nothing else:

1. Record every `next_cursor` the API hands out, so that a rejected cursor
   can be told apart: a cursor is opaque and signed for its owner, so no
   schema can say which strings of the cursor's shape the API will take. A
   `400 Invalid cursor` for a cursor the API never minted is the contract
   (openapi.yaml, `Cursor`); for one it minted, it stays a failure.
2. Excuse `400 Invalid size` (and a mint's `Invalid ttl_seconds` and
   `Invalid max_size`) for a whole number written as a float (`5.0`):
   JSON Schema's `integer` admits `5.0` as the same number as `5`, and has
   no way to say "written without fraction or exponent", which is what the
   API requires (openapi.yaml, `CreateRequest.size`). Any other rejected
   size stays a failure.
3. Send the bytes of some fresh single-`PUT` uploads through their presigned
   URL, as a client would, so that the stateful phase's confirms can
   succeed and the completed paths (confirm 200, get, list and delete of a
   completed upload, its quota release) are fuzzed too, not only `409 Upload
   bytes missing`. Only uploads of at most 64 KiB whose size is odd get
   their bytes, so pending uploads without bytes stay in the mix.

4. Let the `object_level_authorization` check see through `request_id`.
   That check replays one owner's successful read as the other owner and
   calls it a leak when the answer is the same object, comparing every
   field the schema declares. Every answer of this API carries its own
   `request_id` (the SPEC requires it), so no two answers are ever "the
   same" and the check could never fire: replayed through a proxy that
   served bob's reads of alice's uploads as alice's, it stayed green until
   `request_id` was ignored, and then reported the bypass (ST402). The
   comparison ignores the top-level `request_id` of the bodies it reads,
   nothing else. This reaches into schemathesis's check module, so it is
   tied to the pinned version and fails loudly if that module changes.

5. Excuse `400 Invalid checksums` and `400 Invalid part_size` on create:
   one checksum per PUT of the plan, at most 10,000 parts, and each value
   the exact base64 of a digest of the algorithm are relations between
   members (and inside base64) that JSON Schema cannot state
   (openapi.yaml, `CreateRequest.checksums`).

It also counts the requests made and the answers by status, and writes them
as JSON to `$UPLOADS_FUZZ_STATS` when the run ends.
"""

import atexit
import collections
import json
import os
import threading

import requests
import schemathesis
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi import object_authorization

if schemathesis.__version__ != "4.32.5" or not callable(getattr(object_authorization, "_json_body", None)):
    raise RuntimeError("tests/fuzz/hooks.py patches schemathesis 4.32.5's object_authorization._json_body; recheck it")

_original_json_body = object_authorization._json_body


def _json_body_without_request_id(response):
    body = _original_json_body(response)
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k != "request_id"}
    return body


object_authorization._json_body = _json_body_without_request_id

_LOCK = threading.Lock()
_MINTED_CURSORS = set()
_STATS = {
    "requests": 0,
    "by_status": collections.Counter(),
    "by_operation": collections.Counter(),
    "bytes_sent": 0,
    "excused": collections.Counter(),
}
_MAX_BYTES_SENT = 64 * 1024


def _json(response):
    try:
        return response.json()
    except Exception:
        return None


def _put_bytes(created):
    upload = created.get("upload") or {}
    size = created.get("size")
    parts = upload.get("parts") or []
    if upload.get("type") != "single" or not isinstance(size, int) or size > _MAX_BYTES_SENT or size % 2 == 0:
        return
    if len(parts) != 1:
        return
    part = parts[0]
    answer = requests.put(part["url"], data=b"x" * size, headers=part["headers"], timeout=30)
    if answer.status_code != 200:
        raise AssertionError(f"presigned PUT of {created.get('upload_id')} answered {answer.status_code}")
    with _LOCK:
        _STATS["bytes_sent"] += 1


@schemathesis.hook
def after_call(context, case, response):
    label = f"{case.method} {case.operation.path}"
    with _LOCK:
        _STATS["requests"] += 1
        _STATS["by_status"][str(response.status_code)] += 1
        _STATS["by_operation"][f"{label} {response.status_code}"] += 1
    body = _json(response)
    if not isinstance(body, dict):
        return
    cursor = body.get("next_cursor")
    if isinstance(cursor, str):
        with _LOCK:
            _MINTED_CURSORS.add(cursor)
    if label == "POST /uploads" and response.status_code == 201:
        _put_bytes(body)


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Keeps every failure but the two rejections no schema can describe."""
    if not isinstance(failure, RejectedPositiveData) or response.status_code != 400:
        return True
    error = (_json(response) or {}).get("error")
    if error == "Invalid cursor":
        cursor = (case.query or {}).get("cursor")
        with _LOCK:
            minted = cursor in _MINTED_CURSORS
        if isinstance(cursor, str) and not minted:
            with _LOCK:
                _STATS["excused"]["unminted cursor"] += 1
            return False
    if error in ("Invalid checksums", "Invalid part_size") and isinstance(case.body, dict):
        # One checksum per PUT of the plan, the plan's at most 10,000
        # parts, and each value an exact digest of the algorithm (a
        # 43-character SHA-256 that is really 32 bytes): relations between
        # members and within base64 that a schema cannot state.
        with _LOCK:
            _STATS["excused"]["checksums or parts not matching the plan"] += 1
        return False
    # Whole numbers written as floats: `size` on create, `ttl_seconds` and
    # `max_size` on a token mint.
    for field in ("size", "ttl_seconds", "max_size"):
        if error == f"Invalid {field}" and isinstance(case.body, dict):
            value = case.body.get(field)
            if isinstance(value, float) and value.is_integer():
                with _LOCK:
                    _STATS["excused"][f"whole float {field}"] += 1
                return False
    return True


@atexit.register
def _write_stats():
    path = os.environ.get("UPLOADS_FUZZ_STATS")
    if not path:
        return
    with _LOCK:
        stats = {k: (dict(v) if isinstance(v, collections.Counter) else v) for k, v in _STATS.items()}
    with open(path, "w", encoding="utf-8") as out:
        json.dump(stats, out, indent=1, sort_keys=True)
