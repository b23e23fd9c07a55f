"""One module per top-level ``artextract`` verb, each with a ``register(subparsers)`` function.

:data:`artextract.cli.COMMAND_MODULES` lists them in the order of ``artextract --help``. A verb with
several sources (``ingest``, ``download``) builds its sub-parser and adds one sub-command per source.
"""
