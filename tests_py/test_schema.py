"""The classes the Rust core builds in Python (events, reports) are declared
once, in Rust; the dataclasses users import and the native module's stubs
must agree with that declaration field by field."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import anthill
import pytest
from anthill import _anthill, _events, _summary

STUB = Path(_anthill.__file__).with_name("_anthill.pyi")
CORE_SCHEMA = _anthill.schema()
MODULES = (_events, _summary)


def python_dataclasses() -> dict[str, type]:
    """Every dataclass the package defines for values the core hands over."""
    found: dict[str, type] = {}
    for module in MODULES:
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and dataclasses.is_dataclass(value)
                and value.__module__ == module.__name__
            ):
                found[name] = value
    return found


def test_the_core_and_the_python_package_know_the_same_classes() -> None:
    assert sorted(CORE_SCHEMA) == sorted(python_dataclasses())


@pytest.mark.parametrize("name", sorted(CORE_SCHEMA))
def test_each_dataclass_has_the_core_fields_in_order(name: str) -> None:
    cls = python_dataclasses()[name]
    fields = [(field.name, str(field.type)) for field in dataclasses.fields(cls)]
    assert fields == [tuple(field) for field in CORE_SCHEMA[name]]


@pytest.mark.parametrize("name", sorted(CORE_SCHEMA))
def test_each_class_is_exported_by_the_package(name: str) -> None:
    assert getattr(anthill, name) is python_dataclasses()[name]


def stub_tree() -> ast.Module:
    return ast.parse(STUB.read_text(), filename=str(STUB))


def test_the_stub_declares_no_fields_of_its_own() -> None:
    """The stub names the dataclasses (imported from the package) for what
    the core returns, instead of a field list that could drift."""
    tree = stub_tree()
    classes = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    assert not classes & set(CORE_SCHEMA)
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module in ("_events", "_summary")
        for alias in node.names
    }
    assert imported, "the stub should type the core's results with the dataclasses"
    assert imported <= set(CORE_SCHEMA)


def stub_members() -> dict[str, set[str]]:
    """The names the stub declares: at module level, and in each class."""
    members: dict[str, set[str]] = {"": set()}
    for node in stub_tree().body:
        if isinstance(node, ast.ClassDef):
            members[node.name] = {
                item.name
                for item in node.body
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
            }
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            members[""].add(node.name)
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            members[""].add(node.target.id)
    return members


def test_the_stub_declares_what_the_native_module_has() -> None:
    members = stub_members()
    public = {name for name in members[""] if not name.startswith("_")}
    native = {name for name in dir(_anthill) if not name.startswith("_")}
    assert public == native
    for class_name in ("NativeStore", "NativeStreams", "NativeItemReader"):
        cls = getattr(_anthill, class_name)
        methods = {
            name for name in vars(cls) if not name.startswith("__") and callable(getattr(cls, name))
        }
        properties = {name for name in vars(cls) if not name.startswith("__")} - methods
        assert members[class_name] - {"__new__"} == methods | properties, class_name


def test_open_documents_the_core_defaults() -> None:
    doc = anthill.open.__doc__ or ""
    defaults = _anthill.store_defaults()
    assert sorted(defaults) == [
        "download_concurrency",
        "pad_size",
        "reservation_concurrency",
        "retry_attempts",
        "upload_concurrency",
    ]
    assert f"default {defaults['retry_attempts']})" in doc
    assert f"{defaults['pad_size'] >> 20} MiB" in doc
    assert "{" not in doc
