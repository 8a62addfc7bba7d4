"""The package version, in a module of its own so that any room can read it without importing the package's
face (``tc_clip/__init__.py`` loads the model)."""

__version__ = "0.1.0"
