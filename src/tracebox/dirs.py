"""The user's folders for tracebox (XDG base directories), in one place.

``user_dir("state")`` is ``$XDG_STATE_HOME/tracebox`` (default ``~/.local/state/tracebox``);
likewise ``"data"`` (``~/.local/share``), ``"cache"`` (``~/.cache``) and ``"config"``
(``~/.config``). Nothing here creates a folder: callers make what they write into.
"""

from __future__ import annotations

import os

_DEFAULTS = {
    "state": ("XDG_STATE_HOME", "~/.local/state"),
    "data": ("XDG_DATA_HOME", "~/.local/share"),
    "cache": ("XDG_CACHE_HOME", "~/.cache"),
    "config": ("XDG_CONFIG_HOME", "~/.config"),
}


def user_dir(kind: str, *parts: str) -> str:
    """``<XDG base of kind>/tracebox/<parts...>`` (an empty or relative XDG value is
    ignored, as the XDG spec asks)."""
    var, default = _DEFAULTS[kind]
    base = os.environ.get(var, "")
    if not os.path.isabs(base):
        base = os.path.expanduser(default)
    return os.path.join(base, "tracebox", *parts)
