"""The project's own pipeline, on the smoke profile, in a scratch copy of the working tree (so the working tree's
DVC outputs are untouched): it reproduces end to end, and right after that DVC has nothing left to do."""
import re

import pytest

from salus.core import dvc, load_params, reproduce_in_scratch
from conftest import REPO

@pytest.fixture(scope='module')
def smoke_copy(tmp_path_factory):
    return reproduce_in_scratch(REPO, tmp_path_factory.mktemp('smoke')/'salus', profile='smoke')

def test_smoke_pipeline_reproduces(smoke_copy):
    assert load_params(smoke_copy/'params.yaml').profile == 'smoke'
    assert load_params(REPO/'params.yaml').profile == 'default'        # the working tree is untouched

def test_second_repro_does_nothing_and_status_is_clean(smoke_copy):
    out = dvc('repro', cwd=smoke_copy, capture=True).stdout
    assert re.findall(r"Running stage '([^']+)'", out) == []
    assert 'up to date' in dvc('status', cwd=smoke_copy, capture=True).stdout
