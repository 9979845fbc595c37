"""Feature extraction on Apache Beam: the launcher, the transforms, and what a worker runs."""
