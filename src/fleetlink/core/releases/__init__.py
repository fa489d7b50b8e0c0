"""Agent releases: the operator's release key, signed artifacts in a bucket, download links."""
