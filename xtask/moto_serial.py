"""moto server with one request at a time.

DynamoDB runs every request, and every TransactWriteItems, atomically and in
isolation. moto's threaded server does not: a transaction that fails restores
a snapshot of the whole table taken when it started, undoing what other
requests wrote meanwhile, and a snapshot can catch another transaction half
applied. Serving requests one at a time gives back the atomicity the service
is built on; the interleaving of the functions' own requests is untouched.

Long polling (ReceiveMessage with WaitTimeSeconds > 0) would hold the lock,
so the local tooling polls with WaitTimeSeconds=0.
"""

import argparse
import threading

from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serial(environ, start_response):
        with lock:
            # Materialise the body inside the lock: the request is done when
            # the lock is released.
            return list(app(environ, start_response))

    run_simple(args.host, args.port, serial, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
