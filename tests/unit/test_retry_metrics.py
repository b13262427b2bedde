"""Throttles are counted from botocore's own retry machinery, against a throttling endpoint."""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from service.adapters.metrics import MemoryMetrics
from service.engine.wiring import count_retries


class Throttling(http.server.BaseHTTPRequestHandler):
    hits = 0

    def do_POST(self) -> None:
        Throttling.hits += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps(
            {
                "__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException",
                "message": "slow down",
            }
        ).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


def test_throttled_requests_are_counted_while_botocore_retries_them() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Throttling)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = boto3.client(
            "dynamodb",
            region_name="eu-west-1",
            endpoint_url=f"http://127.0.0.1:{server.server_port}",
            aws_access_key_id="x",
            aws_secret_access_key="x",
            config=Config(retries={"mode": "standard", "max_attempts": 3}),
        )
        metrics = MemoryMetrics()
        count_retries(client, metrics=metrics, region="eu-west-1")
        with pytest.raises(ClientError):
            client.get_item(TableName="t", Key={"pk": {"S": "k"}})
        # Every throttled response botocore saw is counted (it made them all: the retries
        # are its own).
        assert Throttling.hits >= 3
        assert Throttling.hits == metrics.total("throttles")
    finally:
        server.shutdown()
        server.server_close()
