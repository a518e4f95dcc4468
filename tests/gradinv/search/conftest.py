import pytest

from gradinv.cases import make_victim


@pytest.fixture(scope="module")
def ru12():
    return make_victim("random_upstream", batch_size=12, width=300, random_state=3)
