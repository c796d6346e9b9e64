"""Training: configuration, the fit loop, history, callbacks, run directories."""
