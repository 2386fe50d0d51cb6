"""The JSON Schema of fleet files accepts what the loader accepts and refuses what it refuses."""

from __future__ import annotations

import json

import jsonschema
import pytest
from hypothesis import given, settings
from ruamel.yaml import YAML

from tests.engine.config.test_load import EXAMPLE, XTRANSPORT_MUX, fleets
from virtrio.engine.config import (
    Fleet,
    FleetError,
    default_fleet,
    fleet_data,
    fleet_schema,
    parse_fleet,
)


def load(text: str) -> object:
    return json.loads(json.dumps(YAML(typ="safe", pure=True).load(text)))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = fleet_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_examples_validate(validator: jsonschema.Draft202012Validator) -> None:
    validator.validate(load(EXAMPLE))
    validator.validate(load(XTRANSPORT_MUX))
    validator.validate(json.loads(json.dumps(fleet_data(default_fleet(vms=2)))))


@pytest.mark.parametrize(
    "text",
    [
        "vms:\n  - id: a\n    qemu: {template: demo}\n    channels:\n      c: {kind: serail}\n",
        "vms:\n  - id: a\n    qemu: {template: demo}\n    memory: 3\n",
        "hosts:\n  - {id: h}\n",
        "defaults: {call_timeout: soon}\n",
        "vms:\n  - id: a\n    qemu: {template: demo}\n    channels:\n"
        "      m: {kind: mux, protocol: udp}\n",
        "vms:\n  - id: a\n    qemu: {template: demo}\n    channels:\n"
        "      m: {kind: mux, protocol: xtransport, address: 'tcp://h:1', frame_size: big}\n",
        "vms:\n  - id: a\n    qemu: {template: demo}\n    channels:\n"
        "      m: {kind: mux, protocol: xtransport, address: 'tcp://h:1', ack: 'yes'}\n",
    ],
)
def test_what_the_loader_refuses_the_schema_refuses(
    validator: jsonschema.Draft202012Validator, text: str
) -> None:
    with pytest.raises(FleetError):
        parse_fleet(text)
    assert list(validator.iter_errors(load(text)))


@settings(max_examples=30)
@given(fleets())
def test_generated_fleets_validate(fleet: Fleet) -> None:
    schema = fleet_schema()
    jsonschema.validate(json.loads(json.dumps(fleet_data(fleet))), schema)


def test_the_schema_command_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    from virtrio.engine._cli import main

    assert main(["fleet", "schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["title"] == "virtrio fleet"
    kinds = {b["properties"]["kind"]["const"] for b in printed["$defs"]["channel"]["oneOf"]}
    assert {"qmp", "qga", "spice", "virtio-serial", "serial-console", "mux"} <= kinds
    (mux,) = [
        b for b in printed["$defs"]["channel"]["oneOf"] if b["properties"]["kind"]["const"] == "mux"
    ]
    assert mux["properties"]["protocol"] == {"enum": ["yamux", "xtransport"], "default": "yamux"}
    assert {"frame_size", "ack", "address", "port", "client"} <= set(mux["properties"])
