"""AnyHead: the dataset builder (head assets, renders, photos, webdataset shards)."""
