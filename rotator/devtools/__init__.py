"""Tools for development, tests and ``rotator demo``; the daemon never imports this package."""
