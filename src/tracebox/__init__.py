"""tracebox: the flight recorder and black box for coding agents.

The public Python API mirrors the CLI::

    import tracebox
    p = tracebox.open_project("./runs", project="demo", agent="alice")
    p.claim("build")

Imports are lazy so that ``tracebox --help`` and every CLI call start fast.
"""

__version__ = "0.1.0"
__all__ = ["open_project", "init_project", "Project", "__version__"]


def __getattr__(name):
    if name in ("open_project", "init_project", "Project"):
        from . import project

        return getattr(project, name)
    if name == "errors":
        from . import errors

        return errors
    raise AttributeError(f"module 'tracebox' has no attribute {name!r}")
