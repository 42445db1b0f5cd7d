"""HTTP admin API."""
