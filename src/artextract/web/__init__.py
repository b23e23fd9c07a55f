"""The local web explorer: gallery, painting pages, upload, similar paintings and outlier review.

``artextract serve --catalog CATALOG [--run RUN] [--index INDEX] [--outliers FILE.csv]`` starts it
(see :mod:`artextract.cli.commands.serve`); :func:`artextract.web.app.create_app` builds the FastAPI app.
"""
