"""Protocols by name: ``protocols.get("secagg+")``, including third-party ones.

Another installed package registers a protocol through the entry-point group
``secagg.protocols``; the entry point names a :class:`~protocols.base.ProtocolSpec` (or a
function of no arguments that returns one)::

    # the plugin's pyproject.toml
    [project.entry-points."secagg.protocols"]
    my-protocol = "my_package:SPEC"

Plugins load lazily: the first time a name that is not built in is asked for, or the first
time :func:`names` lists everything. The entry point's name must be the spec's name. A plugin
that fails to load never breaks the others: it is left out of :func:`names`, asking for it
gives one typed line saying why (:class:`~secagg.errors.ConfigError`), and
:func:`plugin_errors` lists every such line. After loading, ``secagg simulate``, ``secagg
bench`` and ``secagg run --protocol NAME`` use a plugin exactly like a built-in protocol.
"""

from __future__ import annotations

from importlib import metadata

from protocols.base import ProtocolSpec
from secagg.errors import ConfigError

__all__ = ["ENTRY_POINT_GROUP", "get", "load_plugins", "names", "plugin_errors", "register"]

#: the entry-point group third-party protocols register in
ENTRY_POINT_GROUP = "secagg.protocols"

_SPECS: dict[str, ProtocolSpec] = {}
_BROKEN: dict[str, str] = {}
_loaded = False


def register(spec: ProtocolSpec) -> ProtocolSpec:
    """Add a protocol under ``spec.name``.

    Raises:
        ConfigError: the name is taken by another spec, or ``spec`` is not a ProtocolSpec.
    """
    if not isinstance(spec, ProtocolSpec):
        raise ConfigError(f"register() takes a ProtocolSpec, got {type(spec).__name__}")
    if spec.name in _SPECS and _SPECS[spec.name] is not spec:
        raise ConfigError(f"protocol name {spec.name!r} is already registered")
    _SPECS[spec.name] = spec
    return spec


def _load_one(ep: metadata.EntryPoint) -> None:
    where = f"{ep.value}" + (f" from {ep.dist.name}" if ep.dist is not None else "")
    try:
        obj = ep.load()
        spec = obj() if callable(obj) and not isinstance(obj, ProtocolSpec) else obj
        if not isinstance(spec, ProtocolSpec):
            raise ConfigError(f"it gave a {type(spec).__name__}, not a ProtocolSpec")
        if spec.name != ep.name:
            raise ConfigError(f"the entry point is named {ep.name!r} but the spec "
                              f"{spec.name!r}")
        if spec.name in _SPECS and _SPECS[spec.name] is not spec:
            raise ConfigError(f"the name {spec.name!r} is already taken")
    except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the others
        reason = str(exc).splitlines()[0] if str(exc) else ""
        _BROKEN[ep.name] = (f"protocol plugin {ep.name!r} ({where}) failed to load: "
                            f"{type(exc).__name__}: {reason}")
        return
    _SPECS[spec.name] = spec


def load_plugins(*, reload: bool = False) -> None:
    """Load every protocol registered in :data:`ENTRY_POINT_GROUP` (once, unless
    ``reload``). Failures are recorded, never raised (see :func:`plugin_errors`)."""
    global _loaded
    if _loaded and not reload:
        return
    _loaded = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _SPECS and not reload:
            continue
        _BROKEN.pop(ep.name, None)
        _load_one(ep)


def plugin_errors() -> tuple[str, ...]:
    """One line per protocol plugin that failed to load."""
    load_plugins()
    return tuple(_BROKEN.values())


def names() -> tuple[str, ...]:
    """Every registered protocol name (built-in first, then plugins that loaded)."""
    load_plugins()
    return tuple(_SPECS)


def get(name: str) -> ProtocolSpec:
    """The protocol called ``name``.

    Raises:
        ConfigError: an unknown name (lists the valid ones), or a plugin of that name that
            failed to load (says why).
    """
    spec = _SPECS.get(name)
    if spec is not None:
        return spec
    load_plugins()
    spec = _SPECS.get(name)
    if spec is not None:
        return spec
    if name in _BROKEN:
        raise ConfigError(_BROKEN[name])
    raise ConfigError(f"unknown protocol {name!r}; choose one of: {', '.join(names())}")
