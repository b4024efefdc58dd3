from __future__ import annotations

import pytest

from harness.registry import Registry, RegistryError


def test_register_and_get_decorator_and_lazy():
    reg: Registry = Registry("widget")

    @reg.register("alpha")
    class Alpha:
        pass

    reg.register_lazy("ordered", "collections:OrderedDict")
    assert reg.get("alpha") is Alpha
    from collections import OrderedDict

    assert reg.get("ordered") is OrderedDict
    assert reg.names() == ["alpha", "ordered"]
    assert reg.names("al*") == ["alpha"]


def test_duplicate_name_raises():
    reg: Registry = Registry("widget")
    reg.register("a", object())
    with pytest.raises(RegistryError, match="Duplicate widget name 'a'"):
        reg.register("a", object())


def test_unknown_name_suggests_close_match_and_lists_all():
    reg: Registry = Registry("compressor")
    for name in ("taylor", "dsd", "qnn"):
        reg.register(name, object())
    with pytest.raises(RegistryError) as info:
        reg.get("tayler")
    message = str(info.value)
    assert "Unknown compressor 'tayler'" in message
    assert "Did you mean: taylor?" in message
    assert "Available: dsd, qnn, taylor" in message


def test_bad_lazy_target_rejected():
    with pytest.raises(ValueError, match="package.module:attr"):
        Registry("x").register_lazy("a", "no_colon_here")


def test_real_registries_resolve_every_entry():
    from compressors import COMPRESSORS
    from workloads import WORKLOADS

    for name in WORKLOADS.names():
        assert WORKLOADS.get(name).info.name == name
    for name in COMPRESSORS.names():
        assert COMPRESSORS.get(name).info.name == name
