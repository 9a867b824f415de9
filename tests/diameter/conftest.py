from __future__ import annotations

import pytest

from aaa_fmip.diameter.dictionary import DiameterDictionary, load_dictionary, register


@pytest.fixture(scope="session")
def dictionary() -> DiameterDictionary:
    d = load_dictionary()
    register(d)
    return d
