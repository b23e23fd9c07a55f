"""ArtExtract: machine learning on paintings.

Classify painting attributes with a multi-task convolutional-recurrent network, find paintings
whose labels do not fit, find similar paintings, and explore and review it all.
"""
# The one place the version is written: pyproject.toml reads it ([tool.setuptools.dynamic]), so the
# wheel's metadata, `artextract --version` and this attribute agree. Releases: CHANGELOG.md.
__version__ = "0.2.0"
