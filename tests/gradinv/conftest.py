import pytest

from gradinv.cases import make_victim


@pytest.fixture(scope="session")
def ce20():
    return make_victim("cross_entropy", batch_size=20, width=1000, random_state=0)


@pytest.fixture(scope="session")
def ru10():
    return make_victim("random_upstream", batch_size=10, width=300, random_state=0)
