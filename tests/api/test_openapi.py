"""The OpenAPI document is valid OpenAPI 3.1, describes exactly the routes the app serves, and
agrees with the code on error codes and request fields (schemathesis then checks the answers
against it: test_schemathesis.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml
from aiohttp.test_utils import TestClient
from schemathesis.specs.openapi.definitions import OPENAPI_31

from api.app import OPENAPI, load_openapi, make_app
from api.backups import CreateBackupRequest
from api.bodies import AlertActionRequest, Body, CreateAlertRequest, DeploymentRequest
from api.disaster_recovery import DisasterRecoveryRequest
from api.errors import REASONS
from api.maintenance import WindowRequest
from tests.api.conftest import write_config

DOC: dict[str, Any] = yaml.safe_load(OPENAPI.read_text())


def test_the_document_is_valid_openapi_3_1_with_valid_schemas() -> None:
    assert DOC["openapi"] == "3.1.0"
    errors = [str(e) for e in jsonschema_rs.validator_for(OPENAPI_31).iter_errors(DOC)]
    assert errors == []
    for name, schema in DOC["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name


def test_error_codes_are_the_codes_the_api_answers_with() -> None:
    assert DOC["components"]["schemas"]["Error"]["properties"]["error"]["enum"] == list(REASONS)


@pytest.mark.parametrize(
    ("model", "schema"),
    [
        (CreateAlertRequest, "CreateAlertRequest"),
        (AlertActionRequest, "AlertActionRequest"),
        (DeploymentRequest, "DeploymentRequest"),
        (WindowRequest, "MaintenanceWindowRequest"),
        (CreateBackupRequest, "CreateBackupRequest"),
        (DisasterRecoveryRequest, "DisasterRecoveryRequest"),
    ],
)
def test_request_schemas_name_the_models_fields(model: type[Body], schema: str) -> None:
    doc = DOC["components"]["schemas"][schema]
    assert set(doc["properties"]) == set(model.model_fields)
    assert set(doc["required"]) == {n for n, f in model.model_fields.items() if f.is_required()}
    assert doc["additionalProperties"] is False


def test_every_route_is_documented_and_every_documented_route_served(tmp_path: Path) -> None:
    cfg, secrets, _ = write_config(tmp_path)
    app = make_app(cfg, secrets)
    served = {
        (r.resource.canonical, r.method.lower())
        for r in app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    }
    documented = {(path, method) for path, item in DOC["paths"].items() for method in item}
    assert served == documented


def test_a_broken_document_fails_at_start(tmp_path: Path) -> None:
    (tmp_path / "openapi.yaml").write_text("openapi: 3.0.3\n")
    with pytest.raises(ValueError, match=r"not an OpenAPI 3\.1"):
        load_openapi(tmp_path / "openapi.yaml")


async def test_the_document_is_served_as_json_without_credentials(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    cfg, secrets, _ = write_config(
        tmp_path, database={"conninfo": "host=127.0.0.1 port=1 dbname=x user=x"}
    )
    client: TestClient = await aiohttp_client(make_app(cfg, secrets))
    resp = await client.get("/api/infrastructure/openapi.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert json.loads(await resp.read()) == DOC
