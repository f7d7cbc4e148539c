"""tiling package."""
