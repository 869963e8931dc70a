"""Reports: R-D curves, BD-rate, statistics, HTML."""
