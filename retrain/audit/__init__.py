"""Know the data: exact and near duplicates, leaks between splits, likely label errors, outliers, small images
and class balance, found from the examples' digests and the feature rows a run already has."""
