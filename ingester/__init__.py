"""ingester: satellite scenes over an area of interest, tiled, downloaded, processed and indexed."""

__version__ = "0.1.0"
