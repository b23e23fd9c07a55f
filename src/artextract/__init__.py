"""ArtExtract: machine learning on paintings.

Classify painting attributes with a multi-task convolutional-recurrent network, find paintings
whose labels do not fit, find similar paintings, and explore and review it all.
"""
__version__ = "0.1.0"
