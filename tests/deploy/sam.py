"""The template as CloudFormation sees it: translated by aws-sam-translator (what `sam deploy`
and CloudFormation's Serverless transform do), and the helpers the deploy tests share."""

from __future__ import annotations

import copy
import io
import json
import zipfile
from functools import cache
from pathlib import Path
from typing import Any

import boto3
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "template.yaml"
# What `sam deploy` puts in place of the local CodeUri once it has uploaded the zip.
ARTIFACT_BUCKET, ARTIFACT_KEY = "georep-artifacts", "georep-lambda.zip"


@cache
def _translated() -> str:
    sam = yaml_parse(TEMPLATE.read_text())
    sam["Resources"]["Replicator"]["Properties"]["CodeUri"] = (
        f"s3://{ARTIFACT_BUCKET}/{ARTIFACT_KEY}"
    )
    # NOTE: the region only fills pseudo parameters the translator itself needs (the partition
    # of managed policy ARNs; this template names none); the output is the same for any region.
    translator = Translator(None, Parser(), boto_session=boto3.Session(region_name="eu-west-1"))
    document = translator.translate(sam, parameter_values={}, get_managed_policy_map=dict)
    return json.dumps(document, indent=1, sort_keys=True)


def translated() -> dict[str, Any]:
    """The CloudFormation template (a fresh copy each call)."""
    document: dict[str, Any] = json.loads(_translated())
    return copy.deepcopy(document)


def translated_json() -> str:
    return _translated()


def resources(kind: str) -> dict[str, dict[str, Any]]:
    """The translated template's resources of one type, by logical id."""
    return {k: v for k, v in translated()["Resources"].items() if v["Type"] == kind}


def placeholder_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("service/__init__.py", "")
    return buffer.getvalue()
