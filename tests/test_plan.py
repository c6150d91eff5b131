from __future__ import annotations

import pytest

from advisor.plan import QuantPlan


def test_digest_is_stable_and_ignores_label() -> None:
    a = QuantPlan("gguf", {"b": "Q4_K", "a": "Q8_0"}, {"imatrix": True}, label="x")
    b = QuantPlan("gguf", {"a": "Q8_0", "b": "Q4_K"}, {"imatrix": True}, label="y")
    assert a.digest() == b.digest()
    c = QuantPlan("gguf", {"a": "Q8_0", "b": "Q5_K"}, {"imatrix": True})
    assert c.digest() != a.digest()
    assert QuantPlan.from_dict(a.to_dict()) == a


def test_invalid_plans_name_the_field() -> None:
    with pytest.raises(ValueError, match="tensor_formats"):
        QuantPlan("gguf", {})
    with pytest.raises(ValueError, match="backend"):
        QuantPlan("", {"a": "F16"})
    with pytest.raises(ValueError, match="tensor_formats"):
        QuantPlan.from_dict({"backend": "gguf", "tensor_formats": ["Q4_K"]})
