"""Data: `Dataset`, file formats and loaders, demo data."""
