"""Reports: plots of data and training."""
