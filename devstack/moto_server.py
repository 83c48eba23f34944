"""moto's server, with ``/moto-api/data.json`` (where devstack reads the mail moto's SES
accepted: servers.sent_emails) tolerant of a model whose property raises.

moto 5.2 keeps the parts of a multipart upload as S3 keys without a bucket; reading their
``status`` raises MissingBucket, which data.json does not catch, so after any multipart
upload (the customers CSV export) every later read of sent mail answered 500. Here an
attribute that cannot be read is left out, as moto already does for one that cannot be
serialized.

  python -m devstack.moto_server -H 127.0.0.1 -p 5000      (moto_server's arguments)
"""
from __future__ import annotations

import json
import sys
from typing import Any


def _model_data(self, request: Any, full_url: str, headers: Any):
    from moto.core.model_instances import model_data

    results: dict[str, dict[str, list[Any]]] = {}
    for service in sorted(model_data):
        models = model_data[service]
        results[service] = {}
        for name in sorted(models):
            results[service][name] = []
            for instance in models[name].instances_tracked:
                fields = {}
                for attr in dir(instance):
                    if attr.startswith("_"):
                        continue
                    try:
                        value = getattr(instance, attr)
                        json.dumps(value)
                    except Exception:  # noqa: BLE001 - moto's own rule, widened
                        continue
                    fields[attr] = value
                results[service][name].append(fields)
    return 200, {"Content-Type": "application/javascript"}, json.dumps(results)


def main() -> None:
    from moto.moto_api._internal.responses import MotoAPIResponse
    from moto.server import main as moto_main

    MotoAPIResponse.model_data = _model_data
    moto_main(sys.argv[1:])


if __name__ == "__main__":
    main()
