"""Run in a fresh interpreter by test_packaged_function.py: import the handler from the zip and
hand it events, as Lambda would.

    python -I -S invoke_packaged.py RESULT.json ZIP SITE_DIR... -- EVENT.json...

``-I -S``: no PYTHONPATH, no user site, no .pth files (so not the editable install of georep):
``sys.path`` is the zip, then the dependencies' folders (the runtime's boto3 included), then
the standard library. Writes the responses, where ``service`` was imported from, whether
Hypothesis was imported, and every AWS API call made (operation, region, table, and a
transaction's actions as [kind, table]). Recording
the calls wraps botocore's one request method and calls it unchanged.
"""

import json
import sys

result_path, zip_path, *rest = sys.argv[1:]
split = rest.index("--")
sites, events = rest[:split], rest[split + 1 :]
sys.path[:0] = [zip_path, *sites]

import botocore.client  # noqa: E402

calls = []
_make_api_call = botocore.client.BaseClient._make_api_call


def _recording(self, operation_name, api_params):
    # A transaction's actions, each with its table: IAM authorizes each one by itself.
    actions = [
        [kind, body.get("TableName")]
        for action in api_params.get("TransactItems", [])
        for kind, body in action.items()
    ]
    # A batch read or write: IAM authorizes it on each table it names.
    actions += [[operation_name, table] for table in api_params.get("RequestItems", {})]
    calls.append([operation_name, self.meta.region_name, api_params.get("TableName"), actions])
    return _make_api_call(self, operation_name, api_params)


botocore.client.BaseClient._make_api_call = _recording

import service.surfaces.lambda_handler as lambda_handler  # noqa: E402

responses = []
for path in events:
    with open(path) as file:
        responses.append(lambda_handler.handler(json.load(file), None))
lambda_handler.reset()

with open(result_path, "w") as out:
    json.dump(
        {
            "responses": responses,
            "service_from": lambda_handler.__file__,
            "hypothesis_imported": "hypothesis" in sys.modules,
            "calls": calls,
        },
        out,
    )
