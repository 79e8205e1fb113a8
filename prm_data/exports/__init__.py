"""Export configs built beyond one SQL query: `processbench` (prm_data/exports/processbench.py) and the
configs for the trainers people use now (prm_data/exports/formats.py lists them)."""
