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


def test_plugins_cannot_replace_built_ins_and_broken_ones_raise_a_registry_error(monkeypatch) -> None:
    from importlib import metadata

    from harness.registry import Registry, RegistryError

    points = [
        metadata.EntryPoint(name="builtin", value="elsewhere:Thing", group="g"),
        metadata.EntryPoint(name="broken", value="no_such_module_xyz:Thing", group="g"),
    ]
    monkeypatch.setattr(metadata, "entry_points", lambda group=None: [p for p in points if p.group == group])
    registry: Registry = Registry("widget", entry_point_group="g")
    builtin = object()
    registry.register("builtin", builtin)
    assert registry.get("builtin") is builtin
    assert len(registry.shadowed) == 1 and "'builtin'" in registry.shadowed[0] and "ignored" in registry.shadowed[0]
    with pytest.raises(RegistryError, match="widget 'broken' .*cannot be loaded: ModuleNotFoundError"):
        registry.get("broken")


def test_ls_lists_a_broken_plugin_as_broken_and_the_rest(capsys) -> None:
    from harness.cli import main
    from workloads import WORKLOADS

    WORKLOADS.register_lazy("zz_broken", "no_such_module_xyz:Workload")
    try:
        rows = __import__("harness.cli.ls", fromlist=["_workloads"])._workloads(None)
    finally:
        del WORKLOADS._entries["zz_broken"]
    broken = [r for r in rows if r[0] == "zz_broken"]
    assert broken and broken[0][1].startswith("BROKEN: workload 'zz_broken'") and any(r[0] == "resnet50" for r in rows)
    assert main(["ls", "workloads"]) == 0 and "resnet50" in capsys.readouterr().out
