"""One front door for every pool: ``create_pool(name, **kwargs)``, ``list_pools()``, ``register_pool``.

A pool is resolved from a registered name, an ``nn.Module`` subclass, or a callable that
returns a Module. Each registered entry records its family, the spatial dims it supports,
whether it has trainable parameters, and how many output channels it makes per input
channel (2 for ``catavgmax``).
"""

from __future__ import annotations

import difflib
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
        family: the seed's family, e.g. ``"median"``, ``"combined"``.
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
        dims: the spatial dimensions it supports, e.g. ``(2,)``.
        trainable: whether it has learned parameters.
        channel_multiplier: output channels per input channel; None if it depends on the arguments.
        description: one line shown by ``torchpool list``.
        example_kwargs: arguments that build a working instance for a 4-channel input.
        overwrite: replace an existing entry instead of raising.

    Returns:
        ``builder`` unchanged, or a decorator when ``builder`` is omitted.

    Raises:
        ValueError: if ``name`` is taken (and ``overwrite`` is False) or malformed.
        TypeError: if ``builder`` is not callable.

    Example:
        >>> from torch import nn
        >>> _ = register_pool("my_identity", nn.Identity, family="demo", dims=(1, 2, 3), overwrite=True)
        >>> type(create_pool("my_identity")).__name__
        'Identity'
    """
    if not isinstance(name, str) or not name or name != name.strip() or " " in name:
        raise ValueError(f"name must be a non-empty string without spaces, got {name!r}")
    if channel_multiplier is not None and channel_multiplier < 1:
        raise ValueError(f"channel_multiplier must be a positive int or None, got {channel_multiplier}")

    def add(target: B) -> B:
        if not callable(target):
            raise TypeError(f"builder must be a Module class or a callable, got {type(target).__name__}")
        if name in _REGISTRY and not overwrite:
            raise ValueError(f"name {name!r} is already registered; pass overwrite=True to replace it")
        _REGISTRY[name] = PoolInfo(
            name=name,
            builder=target,
            family=family,
            dims=tuple(dims),
            trainable=trainable,
            channel_multiplier=channel_multiplier,
            description=description,
            example_kwargs=dict(example_kwargs or {}),
        )
        return target

    return add if builder is None else add(builder)


def get_pool_info(name: str) -> PoolInfo:
    """Returns the registry entry for ``name``.

    Raises:
        ValueError: for an unknown name, listing close matches.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"pool name {name!r} is not registered{hint} (torchpool.list_pools() lists all)"
        ) from None


def create_pool(pool: str | type[nn.Module] | Builder | nn.Module, **kwargs: Any) -> nn.Module:
    """Builds a pooling Module from a registered name, a Module class or a callable.

    Args:
        pool: a name from :func:`list_pools`, an ``nn.Module`` subclass, a callable
            returning a Module, or a Module instance (returned as is; no kwargs allowed).
        **kwargs: arguments for the Module's constructor.

    Returns:
        The Module.

    Raises:
        ValueError: for an unknown name (with close matches).
        TypeError: if ``pool`` is none of the above or the callable returns no Module.

    Example:
        >>> create_pool("max2d", kernel_size=2)
        MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
    """
    if isinstance(pool, nn.Module):
        if kwargs:
            raise TypeError("pool is already a Module instance; kwargs cannot be applied to it")
        return pool
    if isinstance(pool, str):
        builder: Builder = get_pool_info(pool).builder
    elif callable(pool):
        builder = pool
    else:
        raise TypeError(f"pool must be a name, a Module class or a callable, got {type(pool).__name__}")
    module = builder(**kwargs)
    if not isinstance(module, nn.Module):
        raise TypeError(f"pool {pool!r} built a {type(module).__name__}, not an nn.Module")
    return module


def list_pools(family: str | None = None) -> list[PoolInfo]:
    """All registered pools, sorted by family then name, optionally of one family.

    Example:
        >>> "median2d" in [info.name for info in list_pools()]
        True
    """
    infos = sorted(_REGISTRY.values(), key=lambda info: (info.family, info.name))
    return [info for info in infos if family is None or info.family == family]
