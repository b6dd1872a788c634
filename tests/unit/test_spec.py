"""action.json: every rule of the Roboto reference and API.md, and digests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hatchway.domain.spec import COMPUTE_TABLE, ActionSpec, parse_spec, resolve_local_paths
from hatchway.errors import ValidationFailed

VALID_PAIRS = [
    (256, 512), (256, 1024), (256, 2048),
    (512, 1024), (512, 2048), (512, 3072), (512, 4096),
    (1024, 2048), (1024, 8192), (2048, 4096), (2048, 16384),
    (4096, 8192), (4096, 30720), (8192, 16384), (8192, 61440), (16384, 32768), (16384, 122880),
]  # fmt: skip
INVALID_PAIRS = [
    (256, 256), (256, 3072), (512, 512), (512, 5120), (1024, 1024), (1024, 9216), (1024, 2560),
    (2048, 17408), (4096, 31744), (8192, 18432), (8192, 65536), (16384, 36864), (16384, 131072), (128, 512),
    (3072, 8192),
]  # fmt: skip


def spec(**fields: Any) -> dict[str, Any]:
    return {"name": "my-action", **fields}


def errors_of(document: Any) -> list[dict[str, Any]]:
    with pytest.raises(ValidationFailed) as caught:
        parse_spec(document)
    return caught.value.details


def test_compute_table_matches_the_documented_ranges() -> None:
    assert COMPUTE_TABLE[256] == {512, 1024, 2048}
    assert COMPUTE_TABLE[512] == {1024, 2048, 3072, 4096}
    assert COMPUTE_TABLE[1024] == set(range(2048, 8193, 1024))
    assert COMPUTE_TABLE[2048] == set(range(4096, 16385, 1024))
    assert COMPUTE_TABLE[4096] == set(range(8192, 30721, 1024))
    assert COMPUTE_TABLE[8192] == set(range(16384, 61441, 4096))
    assert COMPUTE_TABLE[16384] == set(range(32768, 122881, 8192))


@pytest.mark.parametrize(("vcpu", "memory"), VALID_PAIRS)
def test_valid_compute_pairs_are_accepted(vcpu: int, memory: int) -> None:
    parsed = parse_spec(spec(compute_requirements={"vCPU": vcpu, "memory": memory}))
    assert (parsed.compute_requirements.vCPU, parsed.compute_requirements.memory) == (vcpu, memory)


@pytest.mark.parametrize(("vcpu", "memory"), INVALID_PAIRS)
def test_invalid_compute_pairs_are_refused_naming_the_field(vcpu: int, memory: int) -> None:
    details = errors_of(spec(compute_requirements={"vCPU": vcpu, "memory": memory}))
    assert details[0]["loc"] == ["body", "compute_requirements"]


def test_compute_defaults() -> None:
    parsed = parse_spec(spec())
    assert parsed.compute_requirements.model_dump() == {"vCPU": 512, "memory": 1024, "storage": 21}


@pytest.mark.parametrize(("storage", "ok"), [(20, False), (21, True), (200, True), (201, False)])
def test_storage_bounds(storage: int, ok: bool) -> None:
    document = spec(compute_requirements={"storage": storage})
    if ok:
        assert parse_spec(document).compute_requirements.storage == storage
    else:
        assert "storage" in errors_of(document)[0]["msg"]


def test_image_uri_and_docker_config_are_exclusive() -> None:
    details = errors_of(spec(image_uri="img:1", docker_config={"dockerfile": "Dockerfile"}))
    assert "mutually exclusive" in details[0]["msg"]


def test_empty_image_uri_beside_docker_config_is_refused() -> None:
    # Roboto's SDK treats "" as unset; its documentation says the fields are exclusive: documentation wins
    assert errors_of(spec(image_uri="", docker_config={}))


@pytest.mark.parametrize(
    "field",
    [
        {"image_uri": "img:1"},
        {"docker_config": {}},
        {"container_parameters": {"command": ["x"]}},
        {"parameters": []},
        {"requires_downloaded_inputs": False},
    ],
)
def test_inherits_excludes_what_it_inherits(field: dict[str, Any]) -> None:
    details = errors_of(spec(inherits={"name": "parent"}, **field))
    assert next(iter(field)) in details[0]["msg"]


def test_unknown_fields_are_named() -> None:
    details = errors_of(spec(colour="blue", compute_requirements={"gpu": 1}))
    assert {"loc": ["body", "colour"], "msg": "unknown field 'colour'", "type": "extra_forbidden"} in details
    assert any(d["loc"] == ["body", "compute_requirements", "gpu"] for d in details)


@pytest.mark.parametrize("name", ["", "My-Action", "-lead", "a" * 64, "sp ace", "under_score", "dot.ted"])
def test_bad_action_names(name: str) -> None:
    assert errors_of({"name": name})[0]["loc"] == ["body", "name"]


@pytest.mark.parametrize("name", ["a", "0x", "check-magnetometer-norm", "a" * 63])
def test_good_action_names(name: str) -> None:
    assert parse_spec({"name": name}).name == name


def test_parameter_defaults_are_coerced_to_strings() -> None:
    parsed = parse_spec(
        spec(
            parameters=[
                {"name": "n", "default": 25},
                {"name": "f", "default": 2.5},
                {"name": "b", "default": True},
                {"name": "s", "default": "x"},
                {"name": "none"},
            ]
        )
    )
    assert [p.default for p in parsed.parameters] == ["25", "2.5", "true", "x", None]


def test_parameter_names_unique_and_well_formed() -> None:
    assert errors_of(spec(parameters=[{"name": "a"}, {"name": "a"}]))
    assert errors_of(spec(parameters=[{"name": "bad name"}]))
    assert parse_spec(spec(parameters=[{"name": "#password"}])).parameters[0].name == "#password"


@pytest.mark.parametrize("names", [["run"], ["ok", "ok"], ["1abc"], ["has space"]])
def test_sync_action_names(names: list[str]) -> None:
    assert errors_of(spec(sync_actions=names))[0]["loc"] == ["body", "sync_actions"]


def test_camel_case_sync_actions_are_fine() -> None:
    assert parse_spec(spec(sync_actions=["testConnection", "list-tables"])).sync_actions == [
        "testConnection",
        "list-tables",
    ]


@pytest.mark.parametrize("retry", [{"count": -1}, {"count": 11}, {"interval_seconds": -1}])
def test_retry_bounds(retry: dict[str, Any]) -> None:
    assert errors_of(spec(retry=retry))


def test_timeout_is_minutes() -> None:
    assert parse_spec(spec(timeout=2)).timeout_seconds == 120
    assert parse_spec(spec()).timeout_seconds == 720 * 60
    assert errors_of(spec(timeout=0))


def test_env_var_names_are_checked() -> None:
    assert errors_of(spec(container_parameters={"env_vars": {"HATCHWAY_RUN_ID": "x"}}))
    assert errors_of(spec(container_parameters={"env_vars": {"1BAD": "x"}}))


def test_digest_is_stable_over_equivalent_documents() -> None:
    a = parse_spec({"name": "x", "tags": [], "description": None, "parameters": [{"name": "p", "default": 5}]})
    b = parse_spec({"parameters": [{"default": "5", "name": "p", "required": False}], "name": "x"})
    assert a.digest() == b.digest()
    assert a.digest().startswith("sha256:") and len(a.digest()) == 71
    assert parse_spec({"name": "x", "tags": ["t"]}).digest() != a.digest()


def test_roboto_full_example_is_accepted() -> None:
    document = {
        "name": "check-magnetometer-norm",
        "short_description": "Flag flights where magnetometer norm deviates from expected range",
        "description": "Computes the magnetometer vector norm for each flight.",
        "parameters": [
            {"name": "min_norm", "description": "Minimum", "required": False, "default": "25"},
            {"name": "max_norm", "description": "Maximum", "required": False, "default": "65"},
        ],
        "requires_downloaded_inputs": False,
        "compute_requirements": {"vCPU": 1024, "memory": 2048},
        "tags": ["diagnostics", "magnetometer"],
    }
    parsed = parse_spec(document)
    assert parsed.normalised()["compute_requirements"] == {"vCPU": 1024, "memory": 2048, "storage": 21}


def test_not_an_object() -> None:
    assert errors_of([1, 2])[0]["type"] == "type_error"


def test_with_parent_takes_inherited_fields() -> None:
    parent = parse_spec(spec(name="parent", image_uri="img:1", parameters=[{"name": "p"}]))
    child = parse_spec(spec(name="child", inherits={"name": "parent"}, tags=["c"]))
    effective = child.with_parent(parent)
    assert effective.image_uri == "img:1" and [p.name for p in effective.parameters] == ["p"]
    assert effective.tags == ["c"] and effective.name == "child"


def test_local_paths_are_made_absolute(tmp_path: Path) -> None:
    docker = resolve_local_paths({"name": "x", "docker_config": {"dockerfile": "Dockerfile"}}, tmp_path)
    assert docker["docker_config"] == {"dockerfile": str(tmp_path / "Dockerfile"), "context": str(tmp_path)}
    host = resolve_local_paths({"name": "x", "container_parameters": {"command": ["x"], "workdir": "sub"}}, tmp_path)
    assert host["container_parameters"]["workdir"] == str(tmp_path / "sub")
    image = resolve_local_paths({"name": "x", "image_uri": "i", "container_parameters": {"workdir": "w"}}, tmp_path)
    assert image["container_parameters"]["workdir"] == "w"
    assert ActionSpec.model_validate(docker).docker_config is not None
