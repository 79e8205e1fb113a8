"""Export configs for the trainers people use now (prm_data/exports/formats.py lists them)."""
