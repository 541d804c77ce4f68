"""Settings: the environment overrides the local stack's file, provider options arrive as validated JSON."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from imgsearch_pipeline.config import STACK_FILE, load_settings
from imgsearch_pipeline.definitions import build_resources


def test_environment_overrides_the_stack_file(tmp_path, monkeypatch):
    (tmp_path / STACK_FILE).write_text(json.dumps({"settings": {"postgres_dsn": "postgresql://stack/db",
                                                                "s3_bucket": "from-stack"}}))
    monkeypatch.setenv("IMGSEARCH_S3_BUCKET", "from-env")
    settings = load_settings(tmp_path)
    assert settings.postgres_dsn == "postgresql://stack/db" and settings.s3_bucket == "from-env"


def test_provider_and_its_options_reach_the_resource(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGSEARCH_PROVIDER", "openai")
    monkeypatch.setenv("IMGSEARCH_PROVIDER_OPTIONS", '{"base_url": "http://127.0.0.1:8000/v1", "model": "m"}')
    monkeypatch.setenv("IMGSEARCH_MAX_IN_FLIGHT", "4")
    monkeypatch.setenv("IMGSEARCH_MAX_IMAGES_PER_SECOND", "2.5")
    monkeypatch.setenv("IMGSEARCH_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("IMGSEARCH_RETRY_BASE_DELAY_S", "0.5")
    monkeypatch.setenv("IMGSEARCH_RETRY_MAX_DELAY_S", "20")
    resource = build_resources(load_settings(tmp_path))["analysis"]
    assert resource.provider == "openai" and resource.options["model"] == "m"
    assert resource.max_in_flight == 4 and resource.pacer().per_second == 2.5
    policy = resource.retry_policy()
    assert (policy.max_attempts, policy.base_delay_s, policy.max_delay_s) == (3, 0.5, 20.0)


def test_bad_settings_fail_at_start_up_with_the_variable_named(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGSEARCH_PROVIDER_OPTIONS", "{model: m}")
    with pytest.raises(ValueError, match="IMGSEARCH_PROVIDER_OPTIONS is not valid JSON"):
        load_settings(tmp_path)
    monkeypatch.setenv("IMGSEARCH_PROVIDER_OPTIONS", "{}")
    monkeypatch.setenv("IMGSEARCH_MAX_IN_FLIGHT", "0")
    with pytest.raises(ValidationError, match="max_in_flight"):
        load_settings(tmp_path)


def test_the_event_sensor_exists_only_with_a_queue(tmp_path, monkeypatch):
    from imgsearch_pipeline.definitions import build_definitions

    assert "s3_event_sensor" not in {s.name for s in build_definitions(load_settings(tmp_path)).sensors}
    monkeypatch.setenv("IMGSEARCH_SQS_QUEUE_URL", "http://127.0.0.1:1/123456789012/events")
    defs = build_definitions(load_settings(tmp_path))
    assert "s3_event_sensor" in {s.name for s in defs.sensors}
    assert defs.resources["s3_event_queue"].queue_url.endswith("/events")
