"""The run folder <output>/runs/N and everything written in it: metrics, plots, report.html,
TensorBoard scalars, and the summary a command ends with."""
