"""One front door for every pool: ``create_pool(name, **kwargs)``, ``list_pools()``, ``register_pool``.

A pool is resolved from a registered name, an ``nn.Module`` subclass, or a callable that
returns a Module. Each registered entry records its family, the spatial dims it supports,
whether it has trainable parameters, and how many output channels it makes per input
channel (2 for ``catavgmax``).

Names: a name without a dimension suffix means the 2-d pool of that family, one rule for every
family (``"median"`` is ``"median2d"``, ``"avg"`` is ``"avg2d"``, ``"catavgmax"`` is
``"catavgmax2d"``); :func:`get_pool_info` and :func:`create_pool` resolve it, :func:`list_pools`
lists the registered names only.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torch import nn

__all__ = ["PoolInfo", "create_pool", "get_pool_info", "list_pools", "register_pool"]

Builder = Callable[..., nn.Module]
B = TypeVar("B", bound=Builder)


@dataclass(frozen=True)
class PoolInfo:
    """What the registry knows about one pool.

    Attributes:
        name: registry name, e.g. ``"median2d"``.
        builder: the Module class (or a callable returning a Module).
        family: the survey's family, e.g. ``"median"``, ``"combined"``.
        dims: spatial dimensions the pool accepts.
        trainable: whether the Module has learned parameters.
        channel_multiplier: output channels per input channel, or None where it depends on
            the arguments (a pyramid's levels, NetVLAD's clusters).
        description: one line for ``torchpool list``.
        example_kwargs: arguments that build a working instance for a 4-channel input.
    """

    name: str
    builder: Builder
    family: str
    dims: tuple[int, ...]
    trainable: bool = False
    channel_multiplier: int | None = 1
    description: str = ""
    example_kwargs: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, PoolInfo] = {}


def register_pool(
    name: str,
    builder: Builder | None = None,
    *,
    family: str,
    dims: tuple[int, ...],
    trainable: bool = False,
    channel_multiplier: int | None = 1,
    description: str = "",
    example_kwargs: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Any:
    """Registers a pool under ``name``; usable directly or as a class decorator.

    Args:
        name: the registry name (lower case, no spaces).
        builder: a Module class or a callable returning a Module; omit to use as a decorator.
        family: the pooling family.
        dims: the spatial dimensions it supports: a tuple of distinct ints from 1, 2, 3, e.g. ``(2,)``.
        trainable: whether it has learned parameters.
        channel_multiplier: output channels per input channel; None if it depends on the arguments.
        description: one line shown by ``torchpool list``.
        example_kwargs: arguments that build a working instance for a 4-channel input.
        overwrite: replace an existing entry instead of raising.

    Returns:
        ``builder`` unchanged, or a decorator when ``builder`` is omitted.

    Raises:
        ValueError: if ``name`` is taken (and ``overwrite`` is False) or malformed, or ``dims`` is
            empty, repeats a value or holds a value outside 1, 2, 3.
        TypeError: if ``builder`` is not callable, ``dims`` is not a tuple of ints (``"2d"`` is
            refused), or another argument has the wrong type.

    Example:
        >>> from torch import nn
        >>> _ = register_pool("my_identity", nn.Identity, family="demo", dims=(1, 2, 3), overwrite=True)
        >>> type(create_pool("my_identity")).__name__
        'Identity'
    """
    if not isinstance(name, str) or not name or name != name.strip() or " " in name:
        raise ValueError(f"name must be a non-empty string without spaces, got {name!r}")
    dims = _check_dims(dims)
    if not isinstance(family, str) or not family.strip():
        raise TypeError(f"family must be a non-empty string, got {family!r}")
    for flag, value in (("trainable", trainable), ("overwrite", overwrite)):
        if not isinstance(value, bool):
            raise TypeError(f"{flag} must be a bool, got {type(value).__name__}")
    if channel_multiplier is not None and (
        isinstance(channel_multiplier, bool) or not isinstance(channel_multiplier, int)
    ):
        raise TypeError(
            f"channel_multiplier must be a positive int or None, got {type(channel_multiplier).__name__}"
        )
    if channel_multiplier is not None and channel_multiplier < 1:
        raise ValueError(f"channel_multiplier must be a positive int or None, got {channel_multiplier}")
    if not isinstance(description, str):
        raise TypeError(f"description must be a string, got {type(description).__name__}")
    if example_kwargs is not None and not isinstance(example_kwargs, dict):
        raise TypeError(f"example_kwargs must be a dict or None, got {type(example_kwargs).__name__}")

    def add(target: B) -> B:
        if not callable(target):
            raise TypeError(f"builder must be a Module class or a callable, got {type(target).__name__}")
        if name in _REGISTRY and not overwrite:
            raise ValueError(f"name {name!r} is already registered; pass overwrite=True to replace it")
        _REGISTRY[name] = PoolInfo(
            name=name,
            builder=target,
            family=family,
            dims=dims,
            trainable=trainable,
            channel_multiplier=channel_multiplier,
            description=description,
            example_kwargs=dict(example_kwargs or {}),
        )
        return target

    return add if builder is None else add(builder)


def _check_dims(dims: object) -> tuple[int, ...]:
    if not isinstance(dims, tuple) or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
        raise TypeError(f"dims must be a tuple of ints from 1, 2, 3, e.g. (2,) or (1, 2, 3), got {dims!r}")
    if not dims or any(d not in (1, 2, 3) for d in dims) or len(set(dims)) != len(dims):
        raise ValueError(f"dims must be a non-empty tuple of distinct ints from 1, 2, 3, got {dims!r}")
    return dims


def _resolve(name: str) -> str | None:
    """The registered name for ``name``: itself, or for a name without a dimension suffix the 2-d pool."""
    if name in _REGISTRY:
        return name
    if not name.endswith(("1d", "2d", "3d")) and f"{name}2d" in _REGISTRY:
        return f"{name}2d"
    return None


def get_pool_info(name: str) -> PoolInfo:
    """Returns the registry entry for ``name``.

    A name without a dimension suffix means the 2-d pool (``"median"`` is ``"median2d"``).

    Raises:
        TypeError: if ``name`` is not a string.
        ValueError: for an unknown name, listing close matches.

    Example:
        >>> get_pool_info("catavgmax").name
        'catavgmax2d'
    """
    if not isinstance(name, str):
        raise TypeError(f"pool name must be a string, got {type(name).__name__}")
    resolved = _resolve(name)
    if resolved is not None:
        return _REGISTRY[resolved]
    close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ValueError(f"pool name {name!r} is not registered{hint} (torchpool.list_pools() lists all)")


def create_pool(pool: str | type[nn.Module] | Builder | nn.Module, *args: Any, **kwargs: Any) -> nn.Module:
    """Builds a pooling Module from a registered name, a Module class or a callable.

    Args:
        pool: a name from :func:`list_pools` (without a dimension suffix: the 2-d pool), an
            ``nn.Module`` subclass, a callable returning a Module, or a Module instance
            (returned as is; no arguments allowed).
        *args: positional arguments for the Module's constructor, e.g. the kernel size.
        **kwargs: keyword arguments for the Module's constructor.

    Returns:
        The Module.

    Raises:
        ValueError: for an unknown name (with close matches), or an argument out of range
            (PyTorch's own pools are checked here, before their forward).
        TypeError: if ``pool`` is none of the above, the arguments do not fit its constructor,
            or the callable returns no Module.

    Example:
        >>> create_pool("max2d", kernel_size=2)
        MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
        >>> type(create_pool("median", 3)).__name__
        'MedianPool2d'
    """
    if isinstance(pool, nn.Module):
        if args or kwargs:
            raise TypeError("pool is already a Module instance; arguments cannot be applied to it")
        return pool
    if isinstance(pool, str):
        label = _resolve(pool) or pool
        builder: Builder = get_pool_info(pool).builder
    elif callable(pool):
        label = getattr(pool, "__name__", repr(pool))
        builder = pool
    else:
        raise TypeError(f"pool must be a name, a Module class or a callable, got {type(pool).__name__}")
    _check_call(label, builder, args, kwargs)
    module = builder(*args, **kwargs)
    if not isinstance(module, nn.Module):
        raise TypeError(f"pool {pool!r} built a {type(module).__name__}, not an nn.Module")
    return module


def _check_call(label: str, builder: Builder, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """A TypeError naming the pool and its signature when the arguments do not fit it."""
    try:
        signature = inspect.signature(builder)
    except (TypeError, ValueError):  # no signature to check against: the builder decides
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as error:
        plain = [p.replace(annotation=p.empty) for p in signature.parameters.values()]
        raise TypeError(f"{label}: {error}; it takes ({', '.join(map(str, plain))})") from None


def list_pools(family: str | None = None) -> list[PoolInfo]:
    """All registered pools, sorted by family then name, optionally of one family.

    Raises:
        TypeError: if ``family`` is not a string or None.
        ValueError: for an unknown family, listing the families.

    Example:
        >>> "median2d" in [info.name for info in list_pools()]
        True
        >>> [info.name for info in list_pools("median")]
        ['median1d', 'median2d', 'median3d']
    """
    infos = sorted(_REGISTRY.values(), key=lambda info: (info.family, info.name))
    if family is None:
        return infos
    if not isinstance(family, str):
        raise TypeError(f"family must be a string or None, got {type(family).__name__}")
    families = sorted({info.family for info in infos})
    if family not in families:
        raise ValueError(f"family must be one of {families}, got {family!r}")
    return [info for info in infos if info.family == family]
