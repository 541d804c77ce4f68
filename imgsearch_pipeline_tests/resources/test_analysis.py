"""The analysis resource: a provider chosen by name, its options validated by the provider itself."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from imgsearch_pipeline.analysis.builtin import BuiltinProvider
from imgsearch_pipeline.resources.analysis import AnalysisProviderResource


def test_the_named_provider_is_built_once_per_configuration():
    a = AnalysisProviderResource(provider="builtin", options={"batch_size": 8}).get()
    assert isinstance(a, BuiltinProvider) and a.batch_size == 8
    assert AnalysisProviderResource(provider="builtin", options={"batch_size": 8}).get() is a
    assert AnalysisProviderResource(provider="builtin", options={"batch_size": 16}).get() is not a


def test_unknown_providers_and_options_are_refused():
    with pytest.raises(ValueError, match="unknown analysis provider 'clip2'.*builtin, clip, openai, bedrock"):
        AnalysisProviderResource(provider="clip2").get()
    with pytest.raises(ValidationError, match="batch_sise"):
        AnalysisProviderResource(provider="builtin", options={"batch_sise": 8}).get()
