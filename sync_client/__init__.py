"""sarhad-sync: moves submissions from field hubs, Collect folders and USB bundles to the central store."""

__version__ = "0.1.0"
