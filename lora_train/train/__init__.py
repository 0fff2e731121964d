"""Training loops, optimizers, schedulers and the progress events they emit."""
