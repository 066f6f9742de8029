"""The CLI's shape: every command module is registered explicitly, and every error a user can fix derives
from one base class that `main` turns into a one-line message and exit status 2."""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil

import pytest

import annotation
import loop
import loop.cli
import storage
from loop.cli import app
from loop.cli.common import UserError, add_command
from storage.errors import PvarLoopError

# Helpers of command modules: views, and the handlers `annotators exclude|include` call.
NOT_COMMAND_MODULES = {"app", "common", "__main__", "status_view", "quality_view", "exclusions"}


def test_every_command_module_is_registered():
    """A command module that is not in COMMAND_MODULES would silently lose its commands."""
    modules = {m.name for m in pkgutil.iter_modules(loop.cli.__path__)} - NOT_COMMAND_MODULES
    assert modules == {m.__name__.rsplit(".", 1)[1] for m in app.COMMAND_MODULES}


def test_every_command_has_a_handler():
    parser = app.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [name for name, p in sub.choices.items() if p.get_default("handler") is None]
    assert missing == []


def _our_exceptions() -> list[type[BaseException]]:
    found = []
    for package in (loop, annotation, storage):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith(("__main__", "argilla_engine")):  # a script / the Argilla venv's own code
                continue
            module = importlib.import_module(info.name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if issubclass(cls, BaseException) and cls.__module__ == module.__name__:
                    found.append(cls)
    return found


def test_every_error_of_ours_derives_from_the_base():
    exceptions = _our_exceptions()
    assert len(exceptions) >= 20  # the walk found them
    assert [c.__qualname__ for c in exceptions if not issubclass(c, PvarLoopError)] == []


@pytest.mark.parametrize("error", [UserError("bad --round"), PvarLoopError("x.toml: [training] loss_type")])
def test_main_maps_the_base_to_exit_2(error, monkeypatch, capsys):
    def failing_register(sub):
        def handler(_args):
            raise error

        add_command(sub, "boom", handler)

    monkeypatch.setattr(
        app, "COMMAND_MODULES", (type("M", (), {"register": staticmethod(failing_register)}),)
    )
    assert app.main(["boom"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {error}\n"


def test_other_errors_are_not_swallowed(monkeypatch):
    def failing_register(sub):
        def handler(_args):
            raise KeyError("a bug")

        add_command(sub, "boom", handler)

    monkeypatch.setattr(
        app, "COMMAND_MODULES", (type("M", (), {"register": staticmethod(failing_register)}),)
    )
    with pytest.raises(KeyError):
        app.main(["boom"])
