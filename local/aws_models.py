"""The AWS service models botocore ships, reduced to what the error
catalogue needs (local/src/catalogue.rs): for each operation of each service
named on the command line, the errors its model declares (shape name, the
wire code where the model gives one, HTTP status, fault side) and the
conditional headers (If-Match, If-None-Match, ...) its input can carry.

Run with the project's moto virtualenv, which has botocore:
    .venv/bin/python local/aws_models.py s3 dynamodb sqs
Prints one JSON document on stdout.
"""

import json
import sys

import botocore
from botocore.loaders import Loader


def error_of(model, name):
    shape = model["shapes"].get(name, {})
    error = shape.get("error", {})
    fault = bool(shape.get("fault")) or error.get("senderFault") is False
    status = error.get("httpStatusCode") or (500 if fault else 400)
    return {"shape": name, "code": error.get("code") or name, "status": status, "fault": fault}


def conditions_of(model, operation):
    name = operation.get("input", {}).get("shape")
    members = model["shapes"].get(name, {}).get("members", {}) if name else {}
    return sorted(
        m["locationName"]
        for m in members.values()
        if m.get("location") == "header" and m.get("locationName", "").lower().startswith("if-")
    )


def service(loader, name):
    model = loader.load_service_model(name, "service-2")
    operations = {}
    for op_name, op in model["operations"].items():
        operations[op_name] = {
            "errors": [error_of(model, e["shape"]) for e in op.get("errors", [])],
            "conditions": conditions_of(model, op),
        }
    meta = model["metadata"]
    return {"api_version": meta.get("apiVersion"), "protocol": meta.get("protocol"), "operations": operations}


def main(names):
    loader = Loader()
    out = {"botocore": botocore.__version__, "services": {n: service(loader, n) for n in names}}
    json.dump(out, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
